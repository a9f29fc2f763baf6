"""The on-demand evaluation flow: registered versions (one, or several side by side) on a chosen dataset and
protocol, with baselines; a Markdown table as a Prefect artifact and the metrics in an MLflow run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from recsys.config import Settings, load_settings, resolve_feedback
from recsys.data import load_dataset
from recsys.data.dataset import Dataset
from recsys.evaluation.render import markdown_report
from recsys.evaluation.runner import EvaluationReport
from recsys.evaluation.splits import Split
from recsys.nightly import steps
from recsys.registry import Registry, load_bundle
from recsys.registry import runs as mlrun
from recsys.registry.bundle import ModelBundle
from recsys.registry.tracking import VersionInfo

_task: dict[str, Any] = {"persist_result": False, "cache_policy": NO_CACHE}


@task(retries=2, retry_delay_seconds=5, timeout_seconds=600, **_task)
def fetch(registry: Registry, ref: str, work_dir: Path) -> tuple[VersionInfo, ModelBundle]:
    """A version by number or alias ('champion', 'challenger'), downloaded and loaded."""
    info = registry.resolve(ref)
    return info, load_bundle(registry.download(info.version, work_dir / "evaluate" / str(info.version)))


@task(retries=2, retry_delay_seconds=5, timeout_seconds=900, **_task)
def load(settings: Settings) -> Dataset:
    d = settings.data
    return load_dataset(d.dataset, policy=d.policy, quarantine_dir=d.quarantine_dir)


@task(**_task)
def run_evaluation(
    dataset: Dataset, split: Split, bundles: dict[str, ModelBundle], settings: Settings, baselines: tuple[str, ...]
) -> EvaluationReport:
    return steps.evaluate_bundles(
        dataset,
        split,
        bundles,
        settings.evaluation,
        settings.run,
        baselines=baselines,
        progress=get_run_logger().info,
        scale=settings.scale,
    )


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
    registry = Registry(settings.tracking)
    refs = versions or ["champion"]
    fetched = [fetch(registry, str(r), settings.nightly.work_dir) for r in refs]
    bundles = {f"v{info.version}": bundle for info, bundle in fetched}
    data = load(settings)
    settings = resolve_feedback(settings, data)  # "auto" protocol and thresholds, for this dataset
    split = steps.nightly_split(data, settings.evaluation, settings.run)
    notes = []
    test_start = split.params.get("cutoff")
    for name, bundle in bundles.items():
        if test_start is not None and bundle.trained_until >= datetime.fromisoformat(str(test_start)):
            notes.append(
                f"{name} was trained on events up to {bundle.trained_until}, at or after this split's test start "
                f"{test_start}: its numbers here are optimistic."
            )
        elif test_start is None:
            notes.append(f"{name} was trained on events up to {bundle.trained_until}; a random split may overlap it.")
    base = tuple(baselines) if baselines is not None else settings.nightly.baselines
    report = run_evaluation(data, split, bundles, settings, base)
    if len(bundles) == 2:
        a, b = list(bundles)
        report.comparisons[:] = [c for c in report.comparisons if {c.a, c.b} != {a, b}]
        report.comparisons.insert(0, report.compare(a, b))
    text = markdown_report(report, notes=notes)
    create_markdown_artifact(markdown=text, key="evaluation-report", description="recsys offline evaluation")
    run_id = mlrun.start_run(
        registry,
        run_name=f"evaluate-{datetime.now(UTC):%Y%m%dT%H%M%S}",
        tags={"recsys.kind": "evaluation", "recsys.versions": ",".join(bundles), "recsys.dataset": data.name},
    )
    try:
        mlrun.log_evaluation(registry, run_id, report, folder=settings.nightly.work_dir / "runs" / run_id)
        mlrun.end_run(registry, run_id)
    except BaseException:
        mlrun.end_run(registry, run_id, failed=True)
        raise
    for note in notes:
        logger.warning(note)
    return {"run_id": run_id, "markdown": text, "report": report.to_dict()}
