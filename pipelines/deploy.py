"""Deployments: `nightly` on a cron schedule (default 02:00, time zone configurable) and `evaluate` on demand,
served by `recsys schedule` (Prefect's `serve`) against the Prefect server at PREFECT_API_URL."""

from __future__ import annotations

from typing import Any

from prefect.schedules import Cron

from pipelines.evaluate import evaluate_versions
from pipelines.nightly import nightly

NIGHTLY_DEPLOYMENT = "recsys-nightly"
EVALUATE_DEPLOYMENT = "recsys-evaluate"


def build_deployments(settings: Any, *, config_path: str | None = None, cron: str, timezone: str) -> list:
    """The two runner deployments (not yet sent to a server: `prefect.serve` or `.apply()` does that)."""
    params = {"config_path": config_path} if config_path else {}
    return [
        nightly.to_deployment(
            NIGHTLY_DEPLOYMENT,
            schedules=[Cron(cron, timezone=timezone)],
            parameters=params,
            description="Train, evaluate against the champion, register, gate and publish (recsys).",
            tags=["recsys", "nightly"],
            concurrency_limit=1,  # two nights never overlap
        ),
        evaluate_versions.to_deployment(
            EVALUATE_DEPLOYMENT,
            parameters=params,
            description="Offline evaluation of registered versions (recsys).",
            tags=["recsys", "evaluation"],
        ),
    ]
