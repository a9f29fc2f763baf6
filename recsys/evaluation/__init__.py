"""Offline evaluation: protocols (splits), metrics, paired comparisons and the side-by-side runner.

Public names are imported lazily (PEP 562): `recsys.evaluation.splits` or `.metrics` alone do not load the runner
(and with it every baseline), which the ranking state and the serving process rely on."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "PairedComparison": "recsys.evaluation.compare",
    "holm_adjust": "recsys.evaluation.compare",
    "paired_comparison": "recsys.evaluation.compare",
    "coverage": "recsys.evaluation.metrics",
    "intra_list_diversity": "recsys.evaluation.metrics",
    "mean_metrics": "recsys.evaluation.metrics",
    "novelty": "recsys.evaluation.metrics",
    "user_metrics": "recsys.evaluation.metrics",
    "EvaluationReport": "recsys.evaluation.runner",
    "ModelResult": "recsys.evaluation.runner",
    "cold_only_slice": "recsys.evaluation.runner",
    "evaluate": "recsys.evaluation.runner",
    "select_by_validation": "recsys.evaluation.selection",
    "select_ease_lowpass": "recsys.evaluation.selection",
    "PROTOCOLS": "recsys.evaluation.splits",
    "Split": "recsys.evaluation.splits",
    "make_split": "recsys.evaluation.splits",
    "split_cold_items": "recsys.evaluation.splits",
    "split_fixed": "recsys.evaluation.splits",
    "split_leave_last_out": "recsys.evaluation.splits",
    "split_ms_stratified": "recsys.evaluation.splits",
    "split_temporal": "recsys.evaluation.splits",
    "validation_split": "recsys.evaluation.splits",
}

__all__ = [
    "PROTOCOLS",
    "EvaluationReport",
    "ModelResult",
    "PairedComparison",
    "Split",
    "cold_only_slice",
    "coverage",
    "evaluate",
    "holm_adjust",
    "intra_list_diversity",
    "make_split",
    "mean_metrics",
    "novelty",
    "paired_comparison",
    "select_by_validation",
    "select_ease_lowpass",
    "split_cold_items",
    "split_fixed",
    "split_leave_last_out",
    "split_ms_stratified",
    "split_temporal",
    "user_metrics",
    "validation_split",
]

if TYPE_CHECKING:
    from recsys.evaluation.compare import PairedComparison, holm_adjust, paired_comparison
    from recsys.evaluation.metrics import coverage, intra_list_diversity, mean_metrics, novelty, user_metrics
    from recsys.evaluation.runner import EvaluationReport, ModelResult, cold_only_slice, evaluate
    from recsys.evaluation.selection import select_by_validation, select_ease_lowpass
    from recsys.evaluation.splits import (
        PROTOCOLS,
        Split,
        make_split,
        split_cold_items,
        split_fixed,
        split_leave_last_out,
        split_ms_stratified,
        split_temporal,
        validation_split,
    )


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
