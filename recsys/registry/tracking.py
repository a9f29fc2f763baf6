"""MLflow tracking and model registry for nightly versions.

One registered model (default `recsys`) whose versions are pyfunc bundles (see `pyfunc_model.py`: the LoRA adapter,
item embeddings, the LightGBM ranker in text format, the training window), with aliases `champion` (what is
published and served) and `challenger` (the latest trained version). One bundle rather than linked encoder and
ranker models: a ranker is only valid with the embeddings it was trained on, so they are promoted and rolled back
together.

The default store is local: a sqlite database and an artifact folder under `mlflow/` in the working directory;
`MLFLOW_TRACKING_URI` (or `[tracking] uri`) points it at a shared `mlflow server` instead.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

CHAMPION = "champion"
CHALLENGER = "challenger"
INPUT_KEY_TAG = "recsys.input_key"


class TrackingConfig(BaseModel, frozen=True, extra="forbid"):
    uri: str | None = Field(
        None,
        description="tracking + registry URI; None: mlflow/ here (load_settings fills it from $MLFLOW_TRACKING_URI)",
    )
    artifact_dir: Path = Field(Path("mlflow/artifacts"), description="artifact root of the local default store")
    experiment: str = "recsys"
    model_name: str = Field("recsys", description="registered model holding one version per nightly run")

    def resolved_uri(self) -> str:
        if self.uri:
            return self.uri
        db = Path("mlflow/mlflow.db").resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{db}"


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    run_id: str | None
    tags: dict[str, str]
    aliases: list[str]

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"


def pip_requirements() -> list[str]:
    """Explicit requirements of a logged version (MLflow would otherwise spend ~20 s inferring them)."""
    from importlib.metadata import version

    pkgs = ("lightgbm", "polars", "numpy", "scipy", "transformers", "peft", "pydantic", "mlflow", "implicit")
    return ["torch==2.13.0", *(f"{p}=={version(p)}" for p in pkgs)]


class Registry:
    """Thin, typed access to one MLflow experiment + registered model."""

    def __init__(self, cfg: TrackingConfig | None = None) -> None:
        from mlflow import MlflowClient

        self.cfg = cfg or TrackingConfig()
        self.uri = self.cfg.resolved_uri()
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def __repr__(self) -> str:
        return f"Registry({self.uri!r}, model={self.cfg.model_name!r})"

    @contextmanager
    def active(self) -> Iterator[None]:
        """MLflow's fluent API (log_model) reads a global URI: point it here for the duration."""
        import mlflow

        # set_tracking_uri also exports MLFLOW_TRACKING_URI: restore the environment exactly, or a later Registry in
        # this process would resolve MLflow's own default instead of ours.
        saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        before_t, before_r = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(before_t)
            mlflow.set_registry_uri(before_r)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.cfg.experiment)
        if exp is not None:
            return exp.experiment_id
        location = None
        if self.uri.startswith("sqlite:") or self.uri.startswith("file:"):
            folder = self.cfg.artifact_dir.resolve()
            folder.mkdir(parents=True, exist_ok=True)
            location = folder.as_uri()
        return self.client.create_experiment(self.cfg.experiment, artifact_location=location)

    # -- versions ------------------------------------------------------------------------------------------------
    def _info(self, mv: Any) -> VersionInfo:
        return VersionInfo(mv.name, int(mv.version), mv.run_id, dict(mv.tags or {}), list(mv.aliases or []))

    def versions(self) -> list[VersionInfo]:
        """All versions, newest first."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_model_versions(f"name = '{self.cfg.model_name}'")
        except MlflowException:
            return []
        infos = [self._info(self.client.get_model_version(mv.name, mv.version)) for mv in found]
        return sorted(infos, key=lambda v: -v.version)

    def by_alias(self, alias: str) -> VersionInfo | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._info(self.client.get_model_version_by_alias(self.cfg.model_name, alias))
        except MlflowException:
            return None

    def champion(self) -> VersionInfo | None:
        return self.by_alias(CHAMPION)

    def get(self, version: int) -> VersionInfo:
        from mlflow.exceptions import MlflowException

        try:
            return self._info(self.client.get_model_version(self.cfg.model_name, str(version)))
        except MlflowException as exc:
            known = [v.version for v in self.versions()]
            raise KeyError(f"no version {version} of {self.cfg.model_name!r} in {self.uri}; versions: {known}") from exc

    def resolve(self, ref: str | int) -> VersionInfo:
        """A version by number or alias ('champion', 'challenger'); KeyError naming what exists when there is none."""
        if str(ref).isdigit():
            return self.get(int(ref))
        info = self.by_alias(str(ref))
        if info is None:
            known = [f"{v.version} ({', '.join(v.aliases)})" if v.aliases else str(v.version) for v in self.versions()]
            raise KeyError(f"no version with alias {ref!r} of {self.cfg.model_name!r} in {self.uri}; versions: {known}")
        return info

    def find_by_input_key(self, key: str) -> VersionInfo | None:
        """The version trained from exactly these inputs (data, config, code), if any: the idempotency check."""
        return next((v for v in self.versions() if v.tags.get(INPUT_KEY_TAG) == key), None)

    def set_alias(self, alias: str, version: int) -> None:
        self.client.set_registered_model_alias(self.cfg.model_name, alias, str(version))

    def rollback(self, version: int) -> VersionInfo:
        """Point `champion` at an earlier version (it must exist); recorded as a tag on that version."""
        target = self.get(version)
        previous = self.champion()
        self.set_alias(CHAMPION, target.version)
        self.client.set_model_version_tag(
            self.cfg.model_name,
            str(target.version),
            "recsys.rolled_back_from",
            str(previous.version) if previous else "none",
        )
        return self.get(version)

    def download(self, version: int, dst: Path | None = None) -> Path:
        """The version's bundle folder, downloaded (from a local store: copied) under `dst`."""
        import mlflow

        dst = Path(dst or tempfile.mkdtemp(prefix="recsys-bundle-"))
        dst.mkdir(parents=True, exist_ok=True)
        with self.active():
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{self.cfg.model_name}/{version}", dst_path=str(dst)
            )
        from mlflow.models import Model

        flavor = Model.load(str(local)).flavors.get("python_function", {})
        rel = flavor.get("artifacts", {}).get("bundle", {}).get("path")
        bundle = Path(local) / rel if rel else Path(local) / "missing"
        if not bundle.is_dir():
            raise FileNotFoundError(f"version {version} of {self.cfg.model_name!r} has no bundle artifact")
        return bundle

    def log_version(self, bundle: Path, *, tags: dict[str, str]) -> VersionInfo:
        """Log the bundle as a pyfunc model in the active run and register it as a new version, tagged."""
        import pandas as pd
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        import mlflow

        code = Path(__file__).with_name("pyfunc_model.py")
        # (user_id, item_id) rows in, the same with score and rank out: given, since a DataFrame type hint does not
        # say which columns
        signature = ModelSignature(
            inputs=Schema([ColSpec("string", "user_id"), ColSpec("string", "item_id")]),
            outputs=Schema(
                [
                    ColSpec("string", "user_id"),
                    ColSpec("string", "item_id"),
                    ColSpec("double", "score", required=False),
                    ColSpec("integer", "rank", required=False),
                ]
            ),
        )
        with self.active():
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(code),
                artifacts={"bundle": str(bundle)},
                pip_requirements=pip_requirements(),
                signature=signature,
                input_example=pd.DataFrame({"user_id": ["a-user"], "item_id": ["an-item"]}),
            )
            mv = mlflow.register_model(info.model_uri, self.cfg.model_name, tags=tags, await_registration_for=0)
        return self.get(int(mv.version))
