"""The nightly flow: load -> split -> fine-tune (warm start) -> embed -> rank -> evaluate vs champion -> register
-> gate -> publish. Only wiring: the night's order, its MLflow run and its alias moves belong to
`recsys.nightly.night.run_night`; this flow runs each of its steps as a Prefect task, with retries and timeouts on
the steps whose failures are transient (file reads, the tracking server, the snapshot store).

Steps hand each other paths, ids and small records (`recsys.nightly.tasks`), never frames: the data, split,
embeddings and report live in the night's folder, the expensive outputs are content-addressed on disk by the library
(adapters, heads, bundles, served models), so Prefect's result store has nothing to persist.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from pipelines._guard import night_lock
from recsys.config import load_settings
from recsys.nightly.night import run_night

T = TypeVar("T")

# Per step: Prefect task options beyond the defaults (no result persistence, no caching).
RETRIED: dict[str, dict[str, Any]] = {
    "load_and_validate": {"retries": 2, "retry_delay_seconds": 5, "timeout_seconds": 900},
    "fetch": {"retries": 2, "retry_delay_seconds": 5, "timeout_seconds": 600},
    "champion": {"retries": 2, "retry_delay_seconds": 5, "timeout_seconds": 600},
    "publish": {"retries": 2, "retry_delay_seconds": 2, "timeout_seconds": 600},
}


def as_task(name: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run one step of the night as a Prefect task named after the step."""
    options: dict[str, Any] = {"persist_result": False, "cache_policy": NO_CACHE, **RETRIED.get(name, {})}
    return task(name=name, **options)(fn)(*args, **kwargs)


@flow(name="nightly", log_prints=True)
def nightly(config_path: str | None = None, force: bool = False, overrides: dict | None = None) -> dict[str, Any]:
    """One night: train a version, evaluate it against the champion, register it, promote it through the gate, and
    publish the champion's lists. Re-running on identical inputs registers nothing new (unless `force`)."""
    settings = load_settings(Path(config_path) if config_path else None, **(overrides or {}))
    log = get_run_logger().info
    with night_lock(settings.nightly.work_dir, str(flow_run.id) if flow_run.id else None, log):
        return run_night(settings, force=force, run_step=as_task, log=log)
