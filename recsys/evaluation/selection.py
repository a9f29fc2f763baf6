"""Hyper-parameters chosen on an inner validation split of the training data (never the test data): EASE's l2 and
the EASE + low-pass blend. Used by the evaluation runner's baseline rows and by the ranking pipeline's own choices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import polars as pl

from recsys.baselines import EASELowPass, Recommender, ScaleConfig
from recsys.data import schema as S
from recsys.evaluation.grids import EASE_GRID, LOWPASS_FACTORS, LOWPASS_WEIGHTS
from recsys.evaluation.metrics import mean_or_zero, user_metrics
from recsys.evaluation.splits import ProtocolName, Split, sample_users, validation_split

__all__ = [
    "EASE_GRID",
    "LOWPASS_FACTORS",
    "LOWPASS_WEIGHTS",
    "inner_split",
    "select_by_validation",
    "select_ease_lowpass",
]


def select_by_validation(
    make: Callable[[float], Recommender],
    grid: Sequence[float],
    train: pl.DataFrame,
    *,
    protocol: ProtocolName,
    seed: int = 42,
    k: int = 10,
    candidates: Sequence[str] | None = None,
    scale: ScaleConfig | None = None,
) -> tuple[float, dict[float, float]]:
    """Pick the hyper-parameter with the best nDCG@k on an inner split of `train` (never on test data), judged on
    at most `scale.label_users` of its users (`inner_split`)."""
    inner = inner_split(train, protocol, seed=seed, scale=scale)
    users = inner.test[S.USER_ID].unique(maintain_order=True).to_list()
    scores: dict[float, float] = {}
    for value in grid:
        model = make(value).fit(inner.train, candidates=candidates if inner.candidate_items == "catalog" else None)
        per_user = user_metrics(model.recommend(users, k=k), inner.test, ks=(k,))
        scores[value] = mean_or_zero(per_user[f"ndcg@{k}"])
    best = max(grid, key=lambda v: (scores[v], -v))
    return best, scores


def inner_split(train: pl.DataFrame, protocol: ProtocolName, *, seed: int, scale: ScaleConfig | None) -> Split:
    """The inner validation split of `train` with its hold-out sampled to `scale.label_users` users (stratified,
    seeded: `sample_users`); every user below that."""
    limit = (scale or ScaleConfig()).label_users
    return sample_users(validation_split(train, protocol, seed=seed), limit, seed=seed, tag="label")[0]


def select_ease_lowpass(
    inner: Split,
    *,
    l2: float,
    factors: Sequence[int] = LOWPASS_FACTORS,
    weights: Sequence[float] = LOWPASS_WEIGHTS,
    item_norm: float = 0.35,
    k: int = 10,
    candidates: Sequence[str] | None = None,
    scale: ScaleConfig | None = None,
) -> tuple[tuple[int, float], dict[str, float]]:
    """(factors, weight) of `EASELowPass(l2=l2, item_norm=item_norm)` with the best nDCG@k on `inner` (a split of
    the training data, never the test data). One fit with the most factors serves every combination (fewer factors
    = the leading columns); ties go to fewer factors, then the lower weight (weight 0 = EASE alone)."""
    model = EASELowPass(l2=l2, factors=max(factors), weight=0.0, item_norm=item_norm, scale=scale)
    model.fit(inner.train, candidates=candidates if inner.candidate_items == "catalog" else None)
    users = inner.test[S.USER_ID].unique(maintain_order=True).to_list()
    scores: dict[tuple[int, float], float] = {}
    # weight 0 is EASE alone, the same for every factor count: scored once, with the fewest factors
    combos = [(min(factors), 0.0)] if 0 in weights else []
    combos += [(f, w) for f in factors for w in weights if w > 0]
    for (f, w), recs in model.recommend_grid(users, combos, k=k).items():
        per_user = user_metrics(recs, inner.test, ks=(k,))
        scores[(f, w)] = mean_or_zero(per_user[f"ndcg@{k}"])
    best = max(scores, key=lambda fw: (scores[fw], -fw[1], -fw[0]))
    return best, {f"{f}x{w}": round(v, 6) for (f, w), v in scores.items()}
