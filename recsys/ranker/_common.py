"""Constants and small helpers of the ranking stage's candidates and features."""

from __future__ import annotations

import numpy as np

from recsys.encoder.interest import INTEREST_FEATURES
from recsys.scoring.sources import zscore_rows
from recsys.scoring.topk import top_k_indices

# Collaborative scores kept as features: EASE, the low-pass filter, their blend (the collaborative candidate source
# and the ranker's default base margin), SAR, item-kNN and, when `sequence_features` is on, sequence neighbours.
CF_SOURCES: tuple[str, ...] = ("ease", "lowpass", "blend", "sar", "itemknn", "seqnb")
# Scores kept as features (with their within-candidate ranks): the collaborative ones and the prior (the blend plus,
# in the text pipeline, the weighted interest match; the ranker's default base margin is its rank).
SCORED: tuple[str, ...] = (*CF_SOURCES, "prior")

# Features that exist only because of the text encoder: dropped by the no-text ablation. (The text source's raw
# score is `im_profile` itself, so no `score_text` column is kept beside it.)
TEXT_FEATURES: tuple[str, ...] = (*INTEREST_FEATURES, "rank_text", "is_from_text")

# Decimals float features are rounded to: polars' parallel aggregations may differ in the last bits between
# processes; rounded, the same data gives the same features, hence the same ranker and metrics, in every run.
FEATURE_DECIMALS = 9


# Above this many candidate items a row's top-n comes from `top_k_indices` (torch.topk, ~20x faster on 100k-item
# rows); below it numpy's argpartition as before, so the catalogs measured in docs/results.md keep their candidates.
PARTITION_COLUMNS = 20_000


def top_mask(scores: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of each row's top-n finite entries."""
    mask = np.zeros(scores.shape, dtype=bool)
    if n <= 0 or scores.shape[1] == 0:
        return mask
    n = min(n, scores.shape[1])
    if scores.shape[1] > PARTITION_COLUMNS:  # numpy's partition is slow on wide rows: torch's top-k (ties by column)
        idx = top_k_indices(scores, n)
    else:
        idx = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    np.put_along_axis(mask, idx, True, axis=1)
    return mask & np.isfinite(scores)


def text_z(text: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """z(interest match) per user over the unseen items with text, 0 elsewhere: the prior's text term."""
    valid = np.isfinite(text) & ~seen
    return np.where(valid, zscore_rows(np.where(valid, text, 0.0), valid), 0.0)


def prior_score(
    src: dict[str, np.ndarray], seen: np.ndarray | None, text_weight: float, *, z: np.ndarray | None = None
) -> np.ndarray:
    """The prior: the blend, plus `text_weight` * z(interest match) over the unseen items with text. Items without
    training events have a neutral blend (0), so there the interest match alone orders them. `z`: `text_z` of these
    users, when already computed (a grid of weights over the same batch computes it once)."""
    if text_weight <= 0 or "text" not in src:
        return src["blend"]
    if z is None:
        assert seen is not None, "the text prior needs the users' seen mask"
        z = text_z(src["text"], seen)
    return src["blend"] + text_weight * z
