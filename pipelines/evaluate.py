"""The on-demand evaluation flow: registered versions (one, or several side by side) on a chosen dataset and
protocol, with baselines; a Markdown table as a Prefect artifact and the metrics in an MLflow run. Only wiring: the
steps and their order are `recsys.nightly.on_demand.evaluate_versions`; each runs here as a Prefect task, handing the
next one paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from pipelines.nightly import as_task
from recsys.config import load_settings
from recsys.nightly import on_demand


@flow(name="evaluate", log_prints=True)
def evaluate_versions(
    versions: list[str] | None = None,
    dataset: str | None = None,
    protocol: str | None = None,
    baselines: list[str] | None = None,
    config_path: str | None = None,
    overrides: dict | None = None,
) -> dict[str, Any]:
    """Evaluate registered versions (numbers or aliases; default: the champion) side by side on `dataset` and
    `protocol` (default: the settings'), beside `baselines`. Returns the report as a dict."""
    logger = get_run_logger()
    over = dict(overrides or {})
    if dataset:
        over["data"] = {**over.get("data", {}), "dataset": dataset}
    if protocol:
        over["evaluation"] = {**over.get("evaluation", {}), "protocol": protocol}
    settings = load_settings(Path(config_path) if config_path else None, **over)
    out = on_demand.evaluate_versions(
        settings,
        versions or ["champion"],
        baselines=tuple(baselines) if baselines is not None else None,
        run_step=as_task,
        log=logger.info,
    )
    create_markdown_artifact(markdown=out["markdown"], key="evaluation-report", description="recsys offline evaluation")
    for note in out.pop("notes"):
        logger.warning(note)
    return out
