"""A split and an evaluation report written to a folder and read back: how the night's steps hand them to each other
(by path). Frames go to Parquet (types kept), the rest to JSON (floats written with Python's shortest round-trip
form, so every metric reads back to the same bits)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import polars as pl

from recsys.data.stored import commit_folder, read_meta, staging_folder
from recsys.evaluation.compare import PairedComparison
from recsys.evaluation.runner import EvaluationReport, ModelResult
from recsys.evaluation.splits import Split

FORMAT = 1


def write_split(split: Split, folder: Path) -> Path:
    """`split` in `folder` (train.parquet, test.parquet, split.json); returns the folder."""
    tmp = staging_folder(folder)
    split.train.write_parquet(tmp / "train.parquet")
    split.test.write_parquet(tmp / "test.parquet")
    meta = {
        "format": FORMAT,
        "protocol": split.protocol,
        "candidate_items": split.candidate_items,
        "params": split.params,
        "stats": split.stats,
        "held_out_items": list(split.held_out_items),
    }
    (tmp / "split.json").write_text(json.dumps(meta, indent=1))
    return commit_folder(tmp, folder)


def read_split(folder: Path) -> Split:
    """The split in `folder` (written by `write_split`)."""
    folder = Path(folder)
    meta = _meta(folder / "split.json")
    return Split(
        protocol=meta["protocol"],
        train=pl.read_parquet(folder / "train.parquet"),
        test=pl.read_parquet(folder / "test.parquet"),
        candidate_items=meta["candidate_items"],
        params=meta["params"],
        stats=meta["stats"],
        held_out_items=tuple(meta["held_out_items"]),
    )


def split_facts(folder: Path) -> dict[str, object]:
    """The protocol, parameters and statistics of the split in `folder`, without reading its frames."""
    meta = _meta(Path(folder) / "split.json")
    return {"protocol": meta["protocol"], "params": meta["params"], "stats": meta["stats"]}


def write_report(report: EvaluationReport, folder: Path) -> Path:
    """`report` in `folder`: report.json plus each model's per-user metrics and lists as Parquet."""
    tmp = staging_folder(folder)
    models = []
    for i, m in enumerate(report.models):
        m.per_user.write_parquet(tmp / f"model-{i}.per_user.parquet")
        m.recommendations.write_parquet(tmp / f"model-{i}.recommendations.parquet")
        models.append(
            {
                "name": m.name,
                "metrics": m.metrics,
                "slices": m.slices,
                "params": m.params,
                "fit_seconds": m.fit_seconds,
                "recommend_seconds": m.recommend_seconds,
            }
        )
    meta = {
        "format": FORMAT,
        "dataset": report.dataset,
        "protocol": report.protocol,
        "protocol_params": report.protocol_params,
        "split_stats": report.split_stats,
        "seed": report.seed,
        "k": report.k,
        "ks": list(report.ks),
        "models": models,
        "comparisons": [asdict(c) for c in report.comparisons],
        "wall_seconds": report.wall_seconds,
        "environment": report.environment,
    }
    (tmp / "report.json").write_text(json.dumps(meta, indent=1, default=str))
    return commit_folder(tmp, folder)


def read_report(folder: Path) -> EvaluationReport:
    """The report in `folder` (written by `write_report`)."""
    folder = Path(folder)
    meta = _meta(folder / "report.json")
    models = [
        ModelResult(
            **m,
            per_user=pl.read_parquet(folder / f"model-{i}.per_user.parquet"),
            recommendations=pl.read_parquet(folder / f"model-{i}.recommendations.parquet"),
        )
        for i, m in enumerate(meta["models"])
    ]
    return EvaluationReport(
        dataset=meta["dataset"],
        protocol=meta["protocol"],
        protocol_params=meta["protocol_params"],
        split_stats=meta["split_stats"],
        seed=meta["seed"],
        k=meta["k"],
        ks=tuple(meta["ks"]),
        models=models,
        comparisons=[PairedComparison(**c) for c in meta["comparisons"]],
        wall_seconds=meta["wall_seconds"],
        environment=meta["environment"],
    )


def report_metrics(folder: Path) -> dict[str, dict[str, float]]:
    """Each model's metrics in the report in `folder`, without reading its per-user frames."""
    return {m["name"]: m["metrics"] for m in _meta(Path(folder) / "report.json")["models"]}


def _meta(path: Path) -> dict:
    return read_meta(path, FORMAT, what="written by recsys.evaluation.stored")
