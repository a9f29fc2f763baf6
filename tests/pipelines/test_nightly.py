"""The nightly flow end to end with the real libraries: Prefect's test harness, MLflow on sqlite, LightGBM, the
snapshot store. Tests run in file order and share one registry (as consecutive nights would)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipelines.nightly import nightly
from recsys.config import load_settings
from recsys.registry import CHALLENGER, Registry
from recsys.serving.store import SQLiteSnapshotStore


def _env(flow_env: dict):
    settings = load_settings(**flow_env)
    return settings, Registry(settings.tracking), SQLiteSnapshotStore(settings.nightly.store_path)


def test_first_night_registers_promotes_and_publishes(flow_env):
    out = nightly(overrides=flow_env)
    settings, registry, store = _env(flow_env)
    assert out["status"] == "promoted" and out["version"] == 1 and out["champion"] == 1
    champ = registry.champion()
    assert champ.version == 1 and CHALLENGER in champ.aliases
    assert champ.tags["recsys.gate"] == "pass" and len(champ.tags["recsys.input_key"]) == 24

    run = registry.client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    assert len(run.data.params["data.fingerprint"]) == 64
    assert run.data.params["encoder.fine_tune.max_steps"] == "6" and "code.version" in run.data.params
    # what training did is in the run, not only in the adapter folder
    assert 1 <= int(run.data.params["trained.fine_tune.steps"]) <= 6 and run.data.params["trained.collab_head"] == "off"
    assert run.data.params["trained.fine_tune.stopped"] in {"completed", "max_steps", "early_stopping"}
    # the run covers the whole night, each step's seconds logged as it finished
    night = {"load_and_validate", "split", "fine_tune", "embed", "train_ranker", "evaluate", "register", "publish"}
    assert {f"seconds.{s}" for s in night} <= set(run.data.metrics)
    assert run.info.end_time - run.info.start_time >= 1000 * sum(
        run.data.metrics[f"seconds.{s}"] for s in night - {"load_and_validate"}
    )
    assert 0 < run.data.metrics["candidate.ndcg_at_10"] <= 1
    assert "toppop.ndcg_at_10" in run.data.metrics and "candidate.cold_items.recall_at_10" in run.data.metrics
    artifacts = {a.path for a in registry.client.list_artifacts(out["run_id"], "evaluation")}
    assert {"evaluation/evaluation_report.json", "evaluation/metric_at_k.png"} <= artifacts
    assert "evaluation/feature_importance_candidate.png" in artifacts
    top = {a.path for a in registry.client.list_artifacts(out["run_id"])}
    assert {"gate.json", "data_summary.json", "split.json", "timings.json"} <= top

    # the registered version is a self-contained bundle: adapter, embeddings, ranker in LightGBM's text format
    bundle = registry.download(1)
    assert (bundle / "adapter" / "adapter_model.safetensors").is_file()
    assert (bundle / "ranker" / "ranker.txt").read_text().startswith("tree")
    assert (bundle / "embeddings.parquet").is_file()

    # every user's list is published, from the champion
    cur = store.current()
    n_users = pl.read_parquet(flow_env["data"]["dataset"].replace("shop.toml", "events.parquet"))["user_id"].n_unique()
    assert cur.model_version == "recsys/1" and cur.n_users == n_users and cur.k == settings.nightly.serving_k
    assert len(store.get("u0001").items) == settings.nightly.serving_k and store.fallback() is not None


def test_the_pyfunc_version_loads_and_scores(flow_env):
    import mlflow

    _, registry, store = _env(flow_env)
    with registry.active():
        model = mlflow.pyfunc.load_model("models:/recsys@champion")
    listed = store.get("u0001").items[:5]
    scored = model.predict(pl.DataFrame({"user_id": ["u0001"] * 6, "item_id": [*listed, "nope"]}).to_pandas())
    assert scored["score"].iloc[:5].notna().all() and scored["score"].isna().iloc[5]


def test_rerun_on_identical_inputs_is_idempotent(flow_env):
    _, registry, store = _env(flow_env)
    before = (len(registry.versions()), store.current().snapshot_id)
    out = nightly(overrides=flow_env)
    assert out["status"] == "unchanged" and out["version"] == 1
    assert (len(registry.versions()), store.current().snapshot_id) == before


def test_sabotaged_ranker_is_registered_but_not_promoted(flow_env, monkeypatch):
    from recsys.ranker import pipeline as ranker_pipeline

    real = ranker_pipeline.train_ranker

    def sabotaged(frame, features, *, cfg, **kw):  # fault injection: the ranker learns the opposite of the labels
        # (without the prior knowledge that would otherwise hold it close to the collaborative source's order)
        cfg = cfg.model_copy(update={"margin_feature": None, "monotone": {}})
        return real(frame.with_columns((1 - pl.col("label")).alias("label")), features, cfg=cfg, **kw)

    monkeypatch.setattr(ranker_pipeline, "train_ranker", sabotaged)
    _, registry, store = _env(flow_env)
    out = nightly(overrides=flow_env, force=True)
    assert out["status"] == "not_promoted", out["gate"]
    assert "significantly worse" in out["gate"]["reason"]
    assert out["gate"]["primary"]["diff"] < 0
    new = registry.get(out["version"])
    assert new.version == 2 and new.tags["recsys.gate"] == "fail" and new.tags["recsys.rerun_of"] == "1"
    assert CHALLENGER in new.aliases and registry.champion().version == 1
    assert store.current().model_version == "recsys/1"  # refreshed lists, still the champion's
    # the evaluation scored both versions on their saved states, not on rebuilt ones: the data is the first night's,
    # so the champion's training window is this split's too (another window is rebuilt: tests/registry/test_bundle.py)
    report = json.loads(
        Path(registry.client.download_artifacts(out["run_id"], "evaluation/evaluation_report.json")).read_text()
    )
    reused = {name: m["params"].get("state_reused") for name, m in report["models"].items()}
    assert reused["candidate"] is True and reused["champion"] is True


def test_failure_midway_leaves_champion_and_lists(flow_env, monkeypatch):
    import recsys.nightly.publishing

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while building the lists")

    monkeypatch.setattr(recsys.nightly.publishing, "ranked_lists", broken)
    _, registry, store = _env(flow_env)
    champion, snapshot = registry.champion().version, store.current()
    with pytest.raises(RuntimeError, match="disk full"):
        nightly(overrides=flow_env, force=True)
    assert registry.champion().version == champion
    assert store.current() == snapshot and store.get("u0001").snapshot_id == snapshot.snapshot_id
    failed = registry.client.search_runs(
        [registry.experiment_id()], order_by=["attributes.start_time DESC"], max_results=1
    )[0]
    assert failed.info.status == "FAILED"


def test_rollback_command(flow_env, tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    _, registry, store = _env(flow_env)
    # say version 2 had been promoted and published by mistake
    registry.set_alias("champion", 2)
    store.publish(
        pl.DataFrame({"user_id": ["u0001"], "item_id": ["i1"], "rank": [1], "score": [1.0]}), model_version="recsys/2"
    )
    config = tmp_path / "recsys.toml"
    nightly_cfg, tracking = flow_env["nightly"], flow_env["tracking"]
    config.write_text(
        f'[tracking]\nuri = "{tracking["uri"]}"\n'
        f'[nightly]\nstore_path = "{nightly_cfg["store_path"]}"\nwork_dir = "{nightly_cfg["work_dir"]}"\n'
        f'[data]\ndataset = "{flow_env["data"]["dataset"]}"\n'
    )
    result = CliRunner().invoke(app, ["registry", "rollback", "1", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "recsys/2 -> recsys/1" in result.output and "re-activated" in result.output
    assert registry.champion().version == 1 and store.current().model_version == "recsys/1"
    listed = CliRunner().invoke(app, ["registry", "list", "--config", str(config)])
    assert listed.exit_code == 0 and "champion" in listed.output
    assert "recent nights" in listed.output  # the nights of `_env`, from the work folder's journal
    # a damaged snapshot store: refused in one line before the champion alias moves
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"\x00not a database" * 64)
    damaged_config = tmp_path / "damaged.toml"
    damaged_config.write_text(config.read_text().replace(str(nightly_cfg["store_path"]), str(damaged)))
    refused = CliRunner().invoke(app, ["registry", "rollback", "2", "--config", str(damaged_config)])
    said = " ".join(refused.output.split())  # the console wraps at the terminal's width
    assert refused.exit_code == 2 and "not a readable SQLite database" in said, refused.output
    assert "Traceback" not in refused.output and registry.champion().version == 1
    bad = CliRunner().invoke(app, ["registry", "rollback", "99", "--config", str(config)])
    assert bad.exit_code == 2 and "no version 99" in bad.output
    # a version that does not exist is refused before any flow starts: one line, exit 2, no traceback
    missing = CliRunner().invoke(app, ["run", "evaluate", "--version", "99", "--config", str(config)])
    assert missing.exit_code == 2 and "no version 99" in missing.output
    assert "Traceback" not in missing.output and "Flow run" not in missing.output


def test_rollback_to_a_damaged_version_is_refused(flow_env, tmp_path):
    """A version whose bundle no longer matches its digest is not made champion: one line, exit 2, nothing moved."""
    from urllib.parse import urlparse

    from typer.testing import CliRunner

    from pipelines.cli import app

    _, registry, store = _env(flow_env)
    champion, current = registry.champion(), store.current()
    target = next(v for v in registry.versions() if v.version != champion.version)
    uri = registry.client.get_model_version_download_uri(registry.cfg.model_name, str(target.version))
    stored = sorted(Path(urlparse(uri).path).rglob("ranker.txt"))
    assert stored, uri  # the artifact store's own copy of the bundle (local file store)
    stored[0].write_text(stored[0].read_text() + "\n# tampered\n")
    config = tmp_path / "recsys.toml"
    nightly_cfg, tracking = flow_env["nightly"], flow_env["tracking"]
    config.write_text(
        f'[tracking]\nuri = "{tracking["uri"]}"\n'
        f'[nightly]\nstore_path = "{nightly_cfg["store_path"]}"\nwork_dir = "{tmp_path / "work"}"\n'
    )
    result = CliRunner().invoke(app, ["registry", "rollback", str(target.version), "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert f"version {target.version}'s bundle cannot be used" in result.output and "digest" in result.output
    assert "Traceback" not in result.output
    assert registry.champion().version == champion.version and store.current().snapshot_id == current.snapshot_id
