"""Model versions: bundles on disk, MLflow tracking and registry, and the promotion gate."""

from __future__ import annotations

from recsys.registry.bundle import ModelBundle, load_bundle, save_bundle
from recsys.registry.gate import GateConfig, GateDecision, decide
from recsys.registry.tracking import CHALLENGER, CHAMPION, Registry, TrackingConfig, VersionInfo

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "GateConfig",
    "GateDecision",
    "ModelBundle",
    "Registry",
    "TrackingConfig",
    "VersionInfo",
    "decide",
    "load_bundle",
    "save_bundle",
]
