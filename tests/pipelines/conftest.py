from __future__ import annotations

import os
from pathlib import Path

import pytest

from recsys.data import generate_synthetic


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    """Prefect's test harness: a temporary database and API server for this test session."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def flow_env(tmp_path_factory, tiny_model_master: Path) -> dict:
    """A team's data as files + spec, an sqlite MLflow store, a snapshot store and a tiny encoder: the overrides a
    nightly run gets (what a recsys.toml would say)."""
    root = tmp_path_factory.mktemp("nightly")
    ds = generate_synthetic(n_users=120, n_items=200, mean_events=25, seed=3)
    ds.interactions.write_parquet(root / "events.parquet")
    ds.items.write_parquet(root / "items.parquet")
    (root / "shop.toml").write_text('name = "shop"\ninteractions = "events.parquet"\nitems = "items.parquet"\n')
    return {
        "data": {"dataset": str(root / "shop.toml")},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}", "artifact_dir": str(root / "artifacts")},
        "run": {"cache_dir": str(root / "embeddings")},
        "nightly": {"work_dir": str(root / "work"), "store_path": str(root / "serving.db"), "baselines": ["toppop"]},
        "encoder": {
            "model": {"model_path": str(tiny_model_master), "precision": "float32", "max_length": 32},
            "enabled_fine_tune": True,  # off by default; the flow's adapter path (warm start, bundle) is tested here
            "fine_tune": {"max_steps": 6, "eval_every": 3, "batch_size": 16},
            "head": {"enabled": False},  # the default head is exercised by test_nightly_implicit.py
        },
    }
