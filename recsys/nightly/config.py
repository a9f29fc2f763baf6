"""The nightly run's own settings (pydantic only, so `recsys.config` and the service read them without importing the
steps)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from recsys.registry.gate import GateConfig


class NightlyConfig(BaseModel, frozen=True, extra="forbid"):
    """What the nightly flow does besides the stages' own settings."""

    work_dir: Path = Field(Path("results/nightly"), description="adapters, bundles and reports, content-addressed")
    store_path: Path = Field(Path("results/serving/snapshots.db"), description="the published lists (SQLite, WAL)")
    retention: int = Field(3, ge=1, description="published snapshots kept for rollback")
    serving_k: int = Field(100, ge=1, le=1000, description="length of each published list")
    baselines: tuple[str, ...] = Field(
        ("toppop", "ease", "ease-lowpass"), description="evaluated beside the candidate and champion"
    )
    warm_start: bool = Field(True, description="fine-tuning starts from the champion's adapter when there is one")
    gate: GateConfig = Field(default_factory=GateConfig)
    cron: str = Field("0 2 * * *", description="schedule of the nightly deployment")
    timezone: str = Field("UTC", description="IANA time zone of the cron schedule")
