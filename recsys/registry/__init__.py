"""Model versions: bundles on disk, MLflow tracking and registry, and the promotion gate.

Names are imported on first use (PEP 562), so `recsys registry list` does not pay for the bundle's imports
(polars, the encoder, the ranker) when it only needs the MLflow client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsys.registry.bundle import ModelBundle, load_bundle, save_bundle
    from recsys.registry.gate import GateConfig, GateDecision, decide
    from recsys.registry.tracking import CHALLENGER, CHAMPION, Registry, TrackingConfig, VersionInfo

_WHERE = {
    "ModelBundle": "bundle",
    "load_bundle": "bundle",
    "save_bundle": "bundle",
    "GateConfig": "gate",
    "GateDecision": "gate",
    "decide": "gate",
    "CHALLENGER": "tracking",
    "CHAMPION": "tracking",
    "Registry": "tracking",
    "TrackingConfig": "tracking",
    "VersionInfo": "tracking",
}

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


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"recsys.registry.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
