"""Settings assembled once, at the edge (CLI, flows): one TOML file plus RECSYS_* environment variables."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from recsys.compute import ComputeConfig, ScaleConfig
from recsys.data.feedback import Feedback
from recsys.data.loaders import default_data_dir
from recsys.data.validation import ValidationPolicy
from recsys.encoder.config import EncoderStageConfig, fine_tune_enabled
from recsys.encoder.interest import InterestConfig
from recsys.encoder.pairs import PairConfig
from recsys.evaluation.grids import EASE_GRID
from recsys.evaluation.splits import ProtocolName
from recsys.ranker.config import PipelineConfig
from recsys.registry.gate import GateConfig
from recsys.registry.tracking import TrackingConfig
from recsys.serving.service import ServingConfig


class DataConfig(BaseModel, frozen=True, extra="forbid"):
    """Which dataset (registered name or spec .toml) and what to do with bad rows."""

    dataset: str = "synthetic"
    data_dir: Path | None = Field(
        None,
        description="folder of the public datasets (ml-100k, amazon-scientific, ...); none: $RECSYS_DATA_DIR, else "
        "../shared/data beside the project",
    )
    policy: ValidationPolicy | None = Field(
        None, description="what to do with bad rows; None: the dataset spec's [policy], else every problem an error"
    )
    quarantine_dir: Path | None = None


class EvaluationConfig(BaseModel, frozen=True, extra="forbid"):
    """Protocol, models and cut-offs of an offline evaluation."""

    protocol: ProtocolName | Literal["auto"] = Field(
        "auto",
        description="auto: `fixed` when the dataset ships its own split (e.g. amazon-scientific), else `temporal`",
    )
    cutoff: datetime | None = Field(None, description="temporal: global cutoff; default from test_fraction")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="temporal: share of events after the cutoff")
    models: tuple[str, ...] = ("toppop", "sar", "itemknn", "ease", "als")
    k: int = Field(10, ge=1, le=1000)
    extra_ks: tuple[int, ...] = ()
    ease_grid: tuple[float, ...] = EASE_GRID

    @model_validator(mode="before")
    @classmethod
    def _seed_moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "seed" in data:
            raise ValueError("[evaluation] seed moved to [run] seed (one root seed for the split, models and gate)")
        return data

    @property
    def resolved_protocol(self) -> ProtocolName:
        """The protocol once `auto` was resolved for a dataset (`resolve_feedback`); an unresolved `auto` is a bug."""
        if self.protocol == "auto":
            raise ValueError("evaluation.protocol is still 'auto': resolve it for the dataset first (resolve_feedback)")
        return self.protocol

    def protocol_params(self) -> dict[str, object]:
        """Split arguments of the chosen protocol."""
        if self.protocol in ("temporal", "auto"):  # auto resolves to temporal for data without a shipped split
            return {"cutoff": self.cutoff, "test_fraction": self.test_fraction}
        return {}


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


Stage = Literal["split", "encoder", "head", "ranker", "gate"]


class RunContext(BaseModel, frozen=True, extra="forbid"):
    """What one run needs besides the stages' settings: one root seed from which every stage's seed derives, and
    where ad-hoc work (the evaluate command's encoder) goes. Assembled at the edge (CLI, flows) with the settings."""

    seed: int = Field(42, description="root seed: the split, models, encoder, head, ranker and the gate's bootstrap")
    seeds: dict[Stage, int] = Field(
        default_factory=dict,
        description="per-stage overrides (split, encoder, head, ranker, gate); a stage not named uses the root seed, "
        "so one number reproduces a run and every published figure keeps its seed",
    )
    work_dir: Path = Field(Path("results/pipeline"), description="`recsys evaluate`: fine-tuned adapters and heads")
    cache_dir: Path = Field(Path("results/embeddings"), description="embedding cache (model version x text hash)")
    fine_tune_time_budget_s: float | None = Field(
        None,
        gt=0,
        description="optional wall-time cap of LoRA fine-tuning; results then depend on the machine's load (the "
        "step budget, [encoder.fine_tune] max_steps, is what makes runs repeat)",
    )

    def seed_for(self, stage: Stage) -> int:
        """The seed of one stage: its override, else the root seed."""
        return self.seeds.get(stage, self.seed)


class Settings(BaseSettings):
    """All stage configs. Precedence: explicit arguments > RECSYS_* env vars (nested with __) > TOML file."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_nested_delimiter="__", extra="forbid")

    data: DataConfig = Field(default_factory=DataConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    encoder: EncoderStageConfig = Field(default_factory=EncoderStageConfig)
    ranker: PipelineConfig = Field(default_factory=PipelineConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    nightly: NightlyConfig = Field(default_factory=NightlyConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    run: RunContext = Field(default_factory=RunContext)
    scale: ScaleConfig = Field(default_factory=ScaleConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Settings from `path` (TOML, optional) and the environment, with `overrides` on top."""
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"{path}: settings file not found")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    settings = Settings.model_validate(_FromFile(**overrides).model_dump())
    if settings.data.data_dir is None:  # the documented variable for the public datasets' folder, read at the edge
        settings = settings.model_copy(
            update={"data": settings.data.model_copy(update={"data_dir": public_data_dir()})}
        )
    # MLflow's own variable, read here at the edge (the library reads no environment): a shared tracking server
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if settings.tracking.uri is None and uri:
        settings = settings.model_copy(update={"tracking": settings.tracking.model_copy(update={"uri": uri})})
    return settings


_Thresholded = TypeVar("_Thresholded", PairConfig, InterestConfig)


class DataFacts(Protocol):
    """What settings are resolved against: a loaded `Dataset` or a written one's `DatasetRef`."""

    @property
    def feedback(self) -> Feedback | None: ...

    @property
    def ships_split(self) -> bool: ...


def public_data_dir() -> Path:
    """The public datasets' folder for code assembled at the edge (CLI, benchmarks, tests): `$RECSYS_DATA_DIR`,
    else `recsys.data.default_data_dir()`."""
    env = os.environ.get("RECSYS_DATA_DIR")
    return Path(env) if env else default_data_dir()


def resolve_protocol(protocol: ProtocolName | Literal["auto"], dataset: DataFacts) -> ProtocolName:
    """`auto`: the split shipped with the data (`fixed`) when there is one, else `temporal`."""
    if protocol != "auto":
        return protocol
    return "fixed" if dataset.ships_split else "temporal"


def resolve_feedback(settings: Settings, dataset: DataFacts) -> Settings:
    """`settings` with every "auto" resolved for `dataset` and this machine: the positive thresholds (training pairs,
    interest profiles of the encoder stage and of the ranker) set to the dataset's (`dataset.feedback`: from its spec
    or inferred when it was validated), the evaluation protocol (`resolve_protocol`), and whether the encoder is
    fine-tuned (`fine_tune_enabled`).

    Called where settings meet a dataset (CLI, flows), so each stage, the logged params and the input key see the
    values actually used; a value set explicitly stays as it is.
    """
    threshold = dataset.feedback.positive_threshold  # type: ignore[union-attr]  # set on construction

    def resolved(cfg: _Thresholded) -> _Thresholded:
        return cfg.model_copy(update={"positive_threshold": threshold}) if cfg.positive_threshold == "auto" else cfg

    enc, ranker = settings.encoder, settings.ranker
    encoder = enc.model_copy(
        update={
            "pairs": resolved(enc.pairs),
            "interest": resolved(enc.interest),
            "enabled_fine_tune": fine_tune_enabled(enc),  # auto: on where a CUDA device is present
        }
    )
    evaluation = settings.evaluation.model_copy(
        update={"protocol": resolve_protocol(settings.evaluation.protocol, dataset)}
    )
    return settings.model_copy(
        update={
            "encoder": encoder,
            "ranker": ranker.model_copy(update={"interest": resolved(ranker.interest)}),
            "evaluation": evaluation,
        }
    )


def local_run_environment() -> None:
    """Defaults that make a local Prefect/MLflow run quiet and reliable (a fresh ephemeral Prefect database needs
    more than Prefect's default 20 s to start on a small machine; model hubs are unreachable). Set values win."""
    import os

    for key, value in {
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # one bar per artifact copy during registration: noise
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }.items():
        os.environ.setdefault(key, value)
