# Two commands do all set-up on a fresh machine: `make demo` (main job) and `make test` (the test suite).
# Each creates the virtual environment first when it is missing or older than pyproject.toml.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# A fresh ephemeral Prefect database needs more than the default 20 s to start on a small machine.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION := false
# Model hubs are unreachable: encoders load from local folders only.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo demo-evaluate test lint bench install clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch==2.13.0 is pinned in pyproject.toml: here it is a local CPU wheel (seconds), not a multi-GB CUDA build.
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The main job: the nightly flow once, now, on the embedded synthetic data, with the default settings (a plain
# `recsys run nightly` afterwards sees identical inputs): train (collaborative head: a fixed number of steps; LoRA
# fine-tuning where a CUDA device is present), evaluate against the champion, register in MLflow (mlflow/), gate,
# publish every user's list (results/serving/).
demo: $(STAMP)
	$(VENV)/bin/recsys run nightly

# Baselines and the full pipeline side by side on the synthetic data, with exported top-K lists.
demo-evaluate: $(STAMP)
	$(VENV)/bin/recsys evaluate --dataset synthetic --protocol temporal \
		--models toppop,sar,ease,als,pipeline,pipeline-no-text --extra-k 50 \
		--out results/demo/report.json --export-dir results/demo/topk

# Style, the import contracts in pyproject.toml (no cycles; the library never imports the flows; serving never imports
# fitting code) and static types.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/quality.py --out bench/results/quality.json
	$(PY) bench/encoder.py --out bench/results/encoder.json
	$(PY) bench/pipeline.py --out bench/results/pipeline.json

clean:
	rm -rf results .pytest_cache .ruff_cache
