"""Offline evaluation: protocols (splits), metrics, paired comparisons and the side-by-side runner."""

from __future__ import annotations

from recsys.evaluation.compare import PairedComparison, holm_adjust, paired_comparison
from recsys.evaluation.metrics import coverage, intra_list_diversity, mean_metrics, novelty, user_metrics
from recsys.evaluation.runner import (
    EvaluationReport,
    ModelResult,
    cold_only_slice,
    evaluate,
    select_by_validation,
    select_ease_lowpass,
)
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
