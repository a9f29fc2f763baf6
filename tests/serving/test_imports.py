"""The serving process loads fitted state and never trains: importing the service and loading a published model
must not import the fitting code (baselines, the pipeline's choices and training, LoRA fine-tuning, the evaluation
runner, the flows). Checked in a fresh interpreter, on what Python actually imported."""

from __future__ import annotations

import json
import subprocess
import sys

from recsys.serving import RankingService, ServingConfig

FORBIDDEN = (
    "recsys.baselines",
    "recsys.ranker.pipeline",
    "recsys.ranker.selection",
    "recsys.ranker.window",
    "recsys.ranker.training",
    "recsys.encoder.finetune",
    "recsys.encoder.collab",
    "recsys.evaluation.runner",
    "recsys.registry.bundle",
    "recsys.nightly.steps",
    "recsys.nightly.publishing",
    "pipelines.nightly",
    "pipelines.evaluate",
    "prefect",
    "peft",
    "mlflow",
)

# What `recsys serve` runs before uvicorn takes over (pipelines/cli/serve.py), then a snapshot load.
SCRIPT = """
import json, sys
import pipelines.cli
from pipelines.cli._common import _settings
from recsys.serving import RankingService, open_store
from recsys.serving.app import create_app
settings = _settings(None)
cfg = settings.serving.model_copy(update={"store_path": sys.argv[1]})
store = open_store(cfg, default_path=settings.nightly.store_path, retention=settings.nightly.retention)
service = RankingService(store, cfg)
create_app(service)
service.reload()
assert service.ready() == (True, "ok"), service.ready()
print(json.dumps(sorted(sys.modules)))
"""


def test_serving_loads_a_published_model_without_importing_training_code(published):
    service = RankingService(published["store"], ServingConfig())
    service.reload()
    assert service.ready() == (True, "ok")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(published["store"].path)], capture_output=True, text=True, check=True
    )
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    assert "recsys.ranker.scoring" in modules and "recsys.scoring.sources" in modules
    leaked = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert leaked == []
