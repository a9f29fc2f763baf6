"""Evaluating registered versions on demand (`recsys run evaluate`): versions side by side on a chosen dataset and
protocol, beside baselines, with a Markdown report and an MLflow run. Like the night, its steps hand each other paths
(`recsys.nightly.tasks`) through a step runner that `pipelines/evaluate.py` makes Prefect tasks."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys.config import Settings, resolve_feedback
from recsys.evaluation.render import markdown_report
from recsys.evaluation.stored import read_report, split_facts
from recsys.nightly import tasks
from recsys.nightly.night import StepRunner, call_directly
from recsys.registry import Registry, load_bundle
from recsys.registry import runs as mlrun
from recsys.registry.tracking import VersionInfo

Log = Callable[[str], None]


def fetch(registry: Registry, ref: str, work_dir: Path) -> tuple[VersionInfo, Path]:
    """A version by number or alias ('champion', 'challenger'): its entry and its bundle, downloaded and checked."""
    info = registry.resolve(ref)
    bundle = load_bundle(registry.download(info.version, Path(work_dir) / "evaluate" / str(info.version)))
    return info, bundle.path


def overlap_notes(bundles: dict[str, Path], test_start: object) -> list[str]:
    """Warnings for versions whose training window reaches into the split's test period (their numbers are
    optimistic), or that a random split may overlap."""
    notes = []
    for name, folder in bundles.items():
        until = load_bundle(folder).trained_until
        if test_start is not None and until >= datetime.fromisoformat(str(test_start)):
            notes.append(
                f"{name} was trained on events up to {until}, at or after this split's test start {test_start}: its "
                "numbers here are optimistic."
            )
        elif test_start is None:
            notes.append(f"{name} was trained on events up to {until}; a random split may overlap it.")
    return notes


def evaluate_versions(
    settings: Settings,
    refs: list[str],
    *,
    baselines: tuple[str, ...] | None = None,
    run_step: StepRunner = call_directly,
    log: Log = print,
) -> dict[str, Any]:
    """Evaluate registered versions (numbers or aliases) side by side on the settings' dataset and protocol, beside
    `baselines` (default: the nightly's). Returns the MLflow run id, the Markdown report, the report as a dict and
    the notes (versions trained into the test period)."""
    registry = Registry(settings.tracking)
    work_dir = settings.nightly.work_dir
    fetched = [run_step("fetch", fetch, registry, str(r), work_dir) for r in refs]
    bundles = {f"v{info.version}": path for info, path in fetched}
    folder = tasks.night_folder(work_dir)
    try:
        data = run_step("load_and_validate", tasks.load_and_validate, settings.data, folder / "data")
        settings = resolve_feedback(settings, data)  # "auto" protocol and thresholds, for this dataset
        split = run_step("split", tasks.split, data, settings, folder / "split")
        params = split_facts(split)["params"]
        notes = overlap_notes(bundles, params.get("cutoff") if isinstance(params, dict) else None)
        base = baselines if baselines is not None else settings.nightly.baselines
        evaluation = settings.model_copy(update={"nightly": settings.nightly.model_copy(update={"baselines": base})})
        report = read_report(
            run_step("evaluate", tasks.evaluate, data, split, bundles, evaluation, out=folder / "report", log=log)
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if len(bundles) == 2:  # the two versions compared with each other first
        a, b = list(bundles)
        report.comparisons[:] = [c for c in report.comparisons if {c.a, c.b} != {a, b}]
        report.comparisons.insert(0, report.compare(a, b))
    text = markdown_report(report, notes=notes)
    run_id = mlrun.start_run(
        registry,
        run_name=f"evaluate-{datetime.now(UTC):%Y%m%dT%H%M%S}",
        tags={"recsys.kind": "evaluation", "recsys.versions": ",".join(bundles), "recsys.dataset": data.name},
    )
    try:
        mlrun.log_evaluation(registry, run_id, report, folder=work_dir / "runs" / run_id)
        mlrun.end_run(registry, run_id)
    except BaseException:
        mlrun.end_run(registry, run_id, failed=True)
        raise
    return {"run_id": run_id, "markdown": text, "report": report.to_dict(), "notes": notes}
