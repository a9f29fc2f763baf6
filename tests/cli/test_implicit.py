"""Implicit feedback end to end: a click log without ratings runs with no settings about feedback."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from recsys.config import load_settings, resolve_feedback
from recsys.data import generate_synthetic, load_dataset

runner = CliRunner()


def write_click_log(folder: Path) -> Path:
    """A team's click log (user, item, time: no rating) and catalog (item_id, title), described by a spec."""
    ds = generate_synthetic(n_users=60, n_items=80, mean_events=15, seed=5)
    ds.interactions.select(
        pl.col("user_id").alias("user"),
        pl.col("item_id").alias("item"),
        pl.col("timestamp").dt.epoch("s").alias("time"),
    ).write_csv(folder / "clicks.csv")
    ds.items.select("item_id", "title").write_csv(folder / "catalog.csv")
    spec = folder / "clicks.toml"
    spec.write_text(
        'interactions = "clicks.csv"\nitems = "catalog.csv"\n[columns]\nuser_id = "user"\nitem_id = "item"\n'
        'timestamp = "time"\n'
    )
    return spec


def test_resolve_feedback_puts_the_datasets_threshold_where_settings_say_auto(tmp_path: Path) -> None:
    implicit = load_dataset(str(write_click_log(tmp_path)))
    s = resolve_feedback(load_settings(), implicit)
    assert s.encoder.pairs.positive_threshold is None and s.ranker.interest.positive_threshold is None
    explicit = resolve_feedback(load_settings(), generate_synthetic(n_users=30, n_items=40, seed=1))
    assert explicit.encoder.pairs.positive_threshold == 4.0 == explicit.encoder.interest.positive_threshold
    kept = resolve_feedback(load_settings(encoder={"pairs": {"positive_threshold": 3}}), implicit)
    assert kept.encoder.pairs.positive_threshold == 3.0  # set explicitly: stays


def test_evaluate_the_pipeline_on_a_click_log_with_no_feedback_settings(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_click_log(tmp_path)
    monkeypatch.setenv("RECSYS_ENCODER__MODEL__MODEL_PATH", str(tiny_model))  # a tiny encoder, a few steps
    monkeypatch.setenv("RECSYS_RUN__CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RECSYS_ENCODER__ENABLED_FINE_TUNE", "true")  # off by default: its pairs are tested here
    monkeypatch.setenv("RECSYS_ENCODER__FINE_TUNE__MAX_STEPS", "2")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report.json"
    res = runner.invoke(app, ["evaluate", "--dataset", str(spec), "--models", "toppop,pipeline", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    feedback = report["dataset"]["feedback"]
    assert feedback["kind"] == "implicit" and feedback["positive_threshold"] is None
    assert 0 < report["models"]["pipeline"]["metrics"]["recall@10"] <= 1
    (adapter,) = (tmp_path / "results" / "pipeline").glob("adapter-*")  # fine-tuned: pairs were found
    assert (adapter / "adapter_model.safetensors").is_file()
    (head,) = (tmp_path / "results" / "pipeline").glob("head-*")  # the default collaborative head on top
    assert json.loads((head / "head.json").read_text())["result"]["stopped"] == "completed"


def test_the_protocol_defaults_to_the_split_the_data_ships(tmp_path: Path) -> None:
    """`auto`: a dataset with its own hold-out is judged on it (`fixed`); one without gets `temporal`; a protocol set
    explicitly stays."""
    import polars as pl

    from recsys.config import resolve_protocol
    from recsys.data.dataset import Dataset

    ds = generate_synthetic(n_users=30, n_items=40, seed=1)
    assert load_settings().evaluation.protocol == "auto"
    assert resolve_feedback(load_settings(), ds).evaluation.protocol == "temporal"
    last = ds.interactions.sort("timestamp").group_by("user_id").last().select("user_id", "item_id", "timestamp")
    shipped = Dataset(
        ds.name,
        ds.interactions,
        ds.items,
        ds.report,
        ds.quarantine,
        holdout=last.with_columns(pl.lit("test").alias("role")),
    )
    assert resolve_protocol("auto", shipped) == "fixed"
    assert resolve_feedback(load_settings(), shipped).evaluation.protocol == "fixed"
    kept = load_settings(evaluation={"protocol": "leave-last-out"})
    assert resolve_feedback(kept, shipped).evaluation.protocol == "leave-last-out"
