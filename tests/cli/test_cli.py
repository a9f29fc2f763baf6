from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from pipelines.cli import app
from recsys.data import generate_synthetic, write_synthetic_files

runner = CliRunner()


def test_evaluate_synthetic_writes_json_and_topk_lists(tmp_path: Path) -> None:
    out, topk = tmp_path / "report.json", tmp_path / "topk"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--dataset",
            "synthetic",
            "--protocol",
            "temporal",
            "--models",
            "toppop,sar,ease,ease-lowpass",
            "--out",
            str(out),
            "--export-dir",
            str(topk),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report["models"]) == {"toppop", "sar", "ease", "ease-lowpass"}
    assert report["protocol"]["name"] == "temporal" and report["seed"] == 42
    assert len(report["dataset"]["fingerprint"]) == 64
    assert "ndcg@10" in report["models"]["sar"]["metrics"] and "cold_items" in report["models"]["sar"]["slices"]
    assert "l2" in report["models"]["ease"]["params"]
    blend = report["models"]["ease-lowpass"]["params"]  # chosen on the validation split, with every score kept
    assert (
        blend["l2"] == report["models"]["ease"]["params"]["l2"]
        and f"{blend['factors']}x{blend['weight']}" in blend["validation_ndcg"]
    )
    lists = pl.read_parquet(topk / "sar.parquet")
    assert lists.columns == ["user_id", "item_id", "rank", "score"]
    assert "ndcg@10" in result.output


def test_evaluate_is_deterministic(tmp_path: Path) -> None:
    outs = []
    for name in ("a.json", "b.json"):
        runner.invoke(
            app, ["evaluate", "--models", "sar,als", "--protocol", "leave-last-out", "--out", str(tmp_path / name)]
        )
        outs.append(json.loads((tmp_path / name).read_text())["models"])
    assert {m: v["metrics"] for m, v in outs[0].items()} == {m: v["metrics"] for m, v in outs[1].items()}


def test_a_teams_own_files_with_column_mapping(tmp_path: Path) -> None:
    ds = generate_synthetic(n_users=60, n_items=80, mean_events=15, seed=5)
    write_synthetic_files(ds, str(tmp_path / "ev.csv"), str(tmp_path / "it.csv"))
    ev = pl.read_csv(tmp_path / "ev.csv").rename({"user_id": "customer", "item_id": "sku"})
    ev.write_csv(tmp_path / "ev.csv")
    pl.read_csv(tmp_path / "it.csv").rename({"item_id": "sku"}).write_csv(tmp_path / "it.csv")
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--interactions",
            str(tmp_path / "ev.csv"),
            "--items",
            str(tmp_path / "it.csv"),
            "--map",
            "user_id=customer",
            "--map",
            "item_id=sku",
            "--models",
            "toppop,sar",
            "--protocol",
            "temporal",
            "--out",
            str(tmp_path / "r.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["dataset"]["n_interactions"] == ds.interactions.height


def test_bad_input_is_one_line_error_and_nonzero_exit(tmp_path: Path) -> None:
    (tmp_path / "ev.csv").write_text("user,item_id,timestamp\nu,i,1700000000\n")
    (tmp_path / "it.csv").write_text("item_id,title\ni,T\n")
    result = runner.invoke(
        app, ["evaluate", "--interactions", str(tmp_path / "ev.csv"), "--items", str(tmp_path / "it.csv")]
    )
    assert result.exit_code == 2
    assert "missing required column(s) 'user_id'" in result.output


def test_validate_prints_report_and_quarantines(tmp_path: Path) -> None:
    (tmp_path / "ev.csv").write_text("user_id,item_id,timestamp\nu,i,1700000000\nu,i,1700000000\n")
    (tmp_path / "it.csv").write_text("item_id,title\ni,T\n")
    result = runner.invoke(
        app,
        [
            "validate",
            "--interactions",
            str(tmp_path / "ev.csv"),
            "--items",
            str(tmp_path / "it.csv"),
            "--policy",
            "on_duplicate=drop",
            "--quarantine-dir",
            str(tmp_path / "q"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert '"duplicate": 1' in result.output
    assert pl.read_parquet(tmp_path / "q" / "quarantine.parquet").height == 1


def test_settings_file_env_and_flags_in_order_of_precedence(tmp_path: Path, monkeypatch) -> None:
    from recsys.config import load_settings

    cfg = tmp_path / "recsys.toml"
    cfg.write_text('[evaluation]\nprotocol = "leave-last-out"\nk = 5\nmodels = ["toppop"]\n')
    assert load_settings(cfg).evaluation.k == 5
    monkeypatch.setenv("RECSYS_EVALUATION__K", "7")
    assert load_settings(cfg).evaluation.k == 7  # env beats file
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["evaluate", "--config", str(cfg), "--k", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["k"] == 3 and report["protocol"]["name"] == "leave-last-out"  # flag beats env, file fills the rest
    assert list(report["models"]) == ["toppop"]
    bad = runner.invoke(app, ["evaluate", "--config", str(cfg), "--protocol", "random"])
    assert bad.exit_code == 2 and "protocol" in bad.output


def test_temporal_cutoff_flag_moves_the_split(tmp_path: Path) -> None:
    reports = []
    for cutoff in ("2024-06-01", "2024-10-01"):
        out = tmp_path / f"{cutoff}.json"
        result = runner.invoke(app, ["evaluate", "--models", "toppop", "--cutoff", cutoff, "--out", str(out)])
        assert result.exit_code == 0, result.output
        reports.append(json.loads(out.read_text())["protocol"])
    assert reports[0]["params"]["cutoff"].startswith("2024-06-01")
    assert reports[0]["split"]["n_test"] > reports[1]["split"]["n_test"]


def test_bad_settings_flag_is_one_line_error() -> None:
    result = runner.invoke(app, ["evaluate", "--cutoff", "notadate", "--models", "toppop"])
    assert result.exit_code == 2
    assert "invalid settings: cutoff:" in result.output
    late = runner.invoke(app, ["evaluate", "--cutoff", "2030-01-01", "--models", "toppop"])
    assert late.exit_code == 2 and "leaves no test events" in late.output


def test_evaluate_accepts_the_fixed_and_cold_items_protocols(tmp_path: Path) -> None:
    fixed = runner.invoke(app, ["evaluate", "--models", "toppop", "--protocol", "fixed"])
    assert fixed.exit_code == 2 and "needs a dataset that ships its test events" in fixed.output  # synthetic has none
    out = tmp_path / "cold.json"
    cold = runner.invoke(app, ["evaluate", "--models", "toppop", "--protocol", "cold-items", "--out", str(out)])
    assert cold.exit_code == 0, cold.output
    report = json.loads(out.read_text())
    assert report["protocol"]["name"] == "cold-items" and report["protocol"]["split"]["n_cold_items"] > 0
    assert report["models"]["toppop"]["slices"]["cold_only"]["ndcg@10"] == 0.0


def test_unknown_model_names_are_refused_before_any_work(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv"  # would fail on reading if the names were checked after loading
    result = runner.invoke(
        app, ["evaluate", "--models", "toppop,foo", "--interactions", str(missing), "--items", str(missing)]
    )
    assert result.exit_code == 2
    assert "unknown model(s) foo" in result.output and "pipeline-no-text" in result.output
    assert "nowhere.csv" not in result.output


def test_help_keeps_bracketed_words() -> None:
    result = runner.invoke(app, ["run", "nightly", "--help"])
    assert result.exit_code == 0 and "[data] dataset" in result.output


def test_evaluate_says_what_was_quarantined_and_where(tmp_path: Path) -> None:
    ds = generate_synthetic(n_users=60, n_items=80, mean_events=15, seed=5)
    write_synthetic_files(ds, str(tmp_path / "ev.csv"), str(tmp_path / "it.csv"))
    ev = pl.read_csv(tmp_path / "ev.csv")
    pl.concat([ev, ev.head(2), ev.head(1).with_columns(item_id=pl.lit("not-in-catalog"))]).write_csv(
        tmp_path / "ev.csv"
    )
    args = ["evaluate", "--interactions", str(tmp_path / "ev.csv"), "--items", str(tmp_path / "it.csv")]
    args += ["--models", "toppop", "--policy", "on_duplicate=drop", "--policy", "on_unknown_item=drop"]
    result = runner.invoke(app, [*args, "--quarantine-dir", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert f"{ev.height} of {ev.height + 3} rows kept; quarantined 2 duplicate, 1 unknown_item" in out
    assert f"3 quarantined row(s): {tmp_path / 'q' / 'quarantine.parquet'}" in out
    assert pl.read_parquet(tmp_path / "q" / "quarantine.parquet").height == 3


def test_bad_unit_and_a_quarantine_file_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "ev.csv").write_text("user_id,item_id,timestamp\nu,i,2020-01-01\nv,i,2020-01-02\n")
    (tmp_path / "it.csv").write_text("item_id,title\ni,T\n")
    files = ["--interactions", str(tmp_path / "ev.csv"), "--items", str(tmp_path / "it.csv")]
    unit = runner.invoke(app, ["validate", *files, "--timestamp-unit", "foo"])
    assert unit.exit_code == 2 and "timestamp unit 'foo' is not one of s, ms, us, iso" in " ".join(unit.output.split())
    (tmp_path / "q").write_text("a file")
    q = runner.invoke(app, ["validate", *files, "--timestamp-unit", "iso", "--quarantine-dir", str(tmp_path / "q")])
    assert q.exit_code == 2 and "is a file: give a folder" in " ".join(q.output.split())
    assert "Traceback" not in q.output


def test_evaluate_applies_the_settings_files_data_policy_and_quarantine(tmp_path: Path) -> None:
    ds = generate_synthetic(n_users=60, n_items=80, mean_events=15, seed=5)
    write_synthetic_files(ds, str(tmp_path / "ev.csv"), str(tmp_path / "it.csv"))
    ev = pl.read_csv(tmp_path / "ev.csv")
    pl.concat([ev, ev.head(1)]).write_csv(tmp_path / "ev.csv")
    cfg = tmp_path / "settings.toml"
    cfg.write_text(f'[data]\nquarantine_dir = "{tmp_path / "q"}"\n[data.policy]\non_duplicate = "drop"\n')
    args = ["evaluate", "--interactions", str(tmp_path / "ev.csv"), "--items", str(tmp_path / "it.csv")]
    result = runner.invoke(app, [*args, "--models", "toppop", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "quarantined 1 duplicate" in " ".join(result.output.split())
    assert pl.read_parquet(tmp_path / "q" / "quarantine.parquet").height == 1
    # a flag overrides one key of the file's policy
    strict = runner.invoke(app, [*args, "--models", "toppop", "--config", str(cfg), "--policy", "on_duplicate=error"])
    assert strict.exit_code == 2 and "duplicate" in strict.output
