"""The nightly flow on implicit feedback: a click log without ratings trains, registers and publishes with no
settings about feedback (its own registry and store, beside test_nightly.py's); its version carries a collaborative
head on top of the fine-tuned encoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.nightly import nightly
from recsys.config import load_settings
from recsys.data import generate_synthetic
from recsys.registry import Registry, load_bundle


@pytest.fixture(scope="module")
def implicit_env(flow_env: dict, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("nightly-implicit")
    ds = generate_synthetic(n_users=60, n_items=100, mean_events=20, seed=3)
    ds.interactions.select("user_id", "item_id", "timestamp").write_parquet(root / "clicks.parquet")
    ds.items.write_parquet(root / "items.parquet")
    (root / "clicks.toml").write_text('interactions = "clicks.parquet"\nitems = "items.parquet"\n')
    return {
        **flow_env,
        "data": {"dataset": str(root / "clicks.toml")},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}", "artifact_dir": str(root / "artifacts")},
        "nightly": {**flow_env["nightly"], "work_dir": str(root / "work"), "store_path": str(root / "serving.db")},
        "encoder": {**flow_env["encoder"], "head": {"enabled": True, "steps": 20}},
    }


def test_a_night_on_a_click_log(implicit_env: dict) -> None:
    import mlflow

    out = nightly(overrides=implicit_env)
    assert out["status"] == "promoted" and out["snapshot"] is not None
    registry = Registry(load_settings(**implicit_env).tracking)
    run = registry.client.get_run(out["run_id"])
    assert run.data.params["encoder.pairs.positive_threshold"] == "None"  # resolved from the data, not "auto"
    with registry.active():
        summary = json.loads(mlflow.artifacts.load_text(f"runs:/{out['run_id']}/data_summary.json"))
    assert summary["feedback"]["kind"] == "implicit" and summary["feedback"]["positive_threshold"] is None
    assert out["metrics"]["candidate"]["recall@10"] > 0
    # the version's bundle carries the head its ranker was trained with, and serves with it
    bundle = load_bundle(registry.download(out["version"], Path(implicit_env["nightly"]["work_dir"]) / "check"))
    assert bundle.head is not None and bundle.head.result.steps == 20
    assert "+head-" in bundle.meta["embeddings_model_version"] and bundle.adapter_path is not None
    assert run.data.params["encoder.head.enabled"] == "True"
    assert run.data.params["trained.collab_head.steps"] == "20"
    assert run.data.params["trained.collab_head.objective"] == "cf-distill"
