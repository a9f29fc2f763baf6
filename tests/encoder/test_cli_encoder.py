from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()


def test_finetune_then_embed_with_the_adapter_and_the_cache(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECSYS_ENCODER__MODEL__MODEL_PATH", str(tiny_model))
    monkeypatch.setenv("RECSYS_RUN__CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RECSYS_ENCODER__FINE_TUNE__MAX_STEPS", "3")
    adapter = tmp_path / "adapter"
    res = runner.invoke(app, ["finetune", "--dataset", "synthetic", "--out", str(adapter), "--time-budget", "60"])
    assert res.exit_code == 0, res.output
    assert "adapter:" in res.output and "3 steps" in res.output
    assert (adapter / "adapter_model.safetensors").is_file()

    out = tmp_path / "emb.parquet"
    args = ["embed", "--dataset", "synthetic", "--adapter", str(adapter), "--out", str(out)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    emb = pl.read_parquet(out)
    assert emb.height == 500 and emb["model_version"].n_unique() == 1
    assert np.allclose(np.linalg.norm(np.stack(emb["vector"].to_numpy()), axis=1), 1.0, atol=1e-3)
    again = runner.invoke(app, args)
    assert "0 encoded now, 500 from the cache" in again.output


def test_finetune_reports_a_bad_adapter_clearly(tiny_model: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RECSYS_ENCODER__MODEL__MODEL_PATH", str(tiny_model))
    res = runner.invoke(app, ["finetune", "--init-adapter", str(tmp_path), "--out", str(tmp_path / "a")])
    assert res.exit_code == 2 and "LoRA adapter folder" in res.output


def test_evaluate_adds_the_pipeline_and_its_ablation(tiny_model: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RECSYS_ENCODER__MODEL__MODEL_PATH", str(tiny_model))
    monkeypatch.setenv("RECSYS_RUN__CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RECSYS_ENCODER__FINE_TUNE__MAX_STEPS", "2")
    monkeypatch.setenv("RECSYS_ENCODER__ENABLED_FINE_TUNE", "true")  # "auto" is off without CUDA
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report.json"
    res = runner.invoke(
        app, ["evaluate", "--dataset", "synthetic", "--models", "ease,pipeline,pipeline-no-text", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert set(report["models"]) == {"ease", "pipeline", "pipeline-no-text"}
    params = report["models"]["pipeline"]["params"]
    assert 0 < params["candidate_recall"]["overall"] <= 1
    gains = {row["feature"] for row in params["feature_importance"]}
    assert "im_profile" in gains and "im_profile" not in {
        row["feature"] for row in report["models"]["pipeline-no-text"]["params"]["feature_importance"]
    }
    assert len(list((tmp_path / "results" / "pipeline").glob("adapter-*"))) == 1  # one fine-tuning, shared
