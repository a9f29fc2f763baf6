"""What one nightly run records in MLflow: params, data fingerprint, code version, metrics, artifacts, version."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import polars as pl

from recsys.evaluation.plots import plot_importance, plot_metric_at_k
from recsys.evaluation.runner import EvaluationReport
from recsys.registry.tracking import Registry


def flatten(prefix: str, value: Any, out: dict[str, str] | None = None) -> dict[str, str]:
    """Nested config -> {"encoder.fine_tune.lr": "0.0005", ...} (MLflow params are flat strings, <= 6000 chars)."""
    out = {} if out is None else out
    if isinstance(value, Mapping):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value, default=str) if isinstance(value, list | tuple) else str(value)
    return out


def metric_name(name: str) -> str:
    """MLflow metric names allow alphanumerics, _ - . / and spaces: '@' becomes '_at_'."""
    return name.replace("@", "_at_")


def report_metrics(report: EvaluationReport) -> dict[str, float]:
    """model.metric and model.slice.metric for every model of the report."""
    out: dict[str, float] = {}
    for m in report.models:
        for k, v in m.metrics.items():
            out[metric_name(f"{m.name}.{k}")] = float(v)
        for slice_name, values in m.slices.items():
            for k, v in values.items():
                if isinstance(v, int | float):
                    out[metric_name(f"{m.name}.{slice_name}.{k}")] = float(v)
    return out


def start_run(registry: Registry, *, run_name: str, tags: dict[str, str]) -> str:
    run = registry.client.create_run(registry.experiment_id(), run_name=run_name, tags=tags)
    return run.info.run_id


def log_evaluation(registry: Registry, run_id: str, report: EvaluationReport, *, folder: Path) -> dict[str, Path]:
    """Metrics (overall and per slice), the report JSON, exported lists, metric@K and feature-importance plots."""
    from mlflow.entities import Metric, Param

    client = registry.client
    metrics = report_metrics(report)
    now = int(time.time() * 1000)
    items = [Metric(k, v, now, 0) for k, v in metrics.items()]
    for start in range(0, len(items), 900):
        client.log_batch(run_id, metrics=items[start : start + 900])
    client.log_batch(
        run_id,
        params=[
            Param("evaluation.protocol", report.protocol),
            Param("evaluation.k", str(report.k)),
            Param("evaluation.seed", str(report.seed)),
        ],
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"report": report.write_json(folder / "evaluation_report.json")}
    plot_metric_at_k(
        {m.name: m.metrics for m in report.models}, folder / "metric_at_k.png", ks=report.ks, names=("ndcg", "recall")
    )
    paths["metric_at_k"] = folder / "metric_at_k.png"
    for m in report.models:
        importance = m.params.get("feature_importance")
        if importance:
            frame = pl.DataFrame(cast(list[dict[str, Any]], importance))
            csv = folder / f"feature_importance_{m.name}.csv"
            frame.write_csv(csv)
            plot_importance(frame, csv.with_suffix(".png"), f"{m.name}: LambdaRank feature importance (gain)")
            paths[f"importance_{m.name}"] = csv
            paths[f"importance_{m.name}_png"] = csv.with_suffix(".png")
    for p in paths.values():
        client.log_artifact(run_id, str(p), artifact_path="evaluation")
    return paths


def log_metrics(registry: Registry, run_id: str, metrics: dict[str, float]) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(metric_name(k), float(v), now, 0) for k, v in metrics.items()]
    for start in range(0, len(items), 900):
        registry.client.log_batch(run_id, metrics=items[start : start + 900])


def log_params(registry: Registry, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(metric_name(k), v[:6000]) for k, v in params.items()]
    for start in range(0, len(items), 90):
        registry.client.log_batch(run_id, params=items[start : start + 90])


def log_json(registry: Registry, run_id: str, name: str, payload: Any, *, artifact_path: str = "") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / name
        p.write_text(json.dumps(payload, indent=2, default=str))
        registry.client.log_artifact(run_id, str(p), artifact_path=artifact_path or None)


def register_bundle(registry: Registry, run_id: str, bundle: Path, *, tags: dict[str, str]) -> Any:
    """Log the bundle as the run's pyfunc model and register it as a new version."""
    import mlflow

    with registry.active(), mlflow.start_run(run_id=run_id):
        return registry.log_version(bundle, tags=tags)


def end_run(registry: Registry, run_id: str, *, failed: bool = False) -> None:
    registry.client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")
