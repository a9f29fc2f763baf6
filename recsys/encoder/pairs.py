"""Training pairs for the encoder from interactions before a cutoff: (what a user liked before) -> (what came next).

Positives are events whose rating (or event weight) reaches `positive_threshold`; events without a rating count as
positive; "auto" takes the threshold from the events before `as_of` (`recsys.data.feedback.infer_feedback`) unless
the edge already put the dataset's in (`recsys.config.resolve_feedback`). For each user's positives in time order,
every positive after the first is a target; its query is either one of the `history_size` positives just before it
(`query="item"`: the same item-to-item form that interest-match scoring uses) or their texts concatenated, most
recent first (`query="history"`). Pairs whose target falls in the last `validation_fraction` of the pre-cutoff time
range are the validation set (early stopping), so validation is always later than training. Nothing at or after
`as_of` is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from recsys.data import schema as S
from recsys.data.feedback import PositiveThreshold, resolve_threshold


@dataclass(frozen=True)
class PairSet:
    """Training or validation pairs. Keys identify the item(s) behind a text, for false-negative masking."""

    queries: list[str]
    targets: list[str]
    query_keys: list[str]
    target_keys: list[str]
    negatives: list[str | None] = field(default_factory=list)  # optional hard negative text per pair

    def __post_init__(self) -> None:
        n = len(self.queries)
        lengths = {len(self.targets), len(self.query_keys), len(self.target_keys)}
        if self.negatives:
            lengths.add(len(self.negatives))
        if lengths != {n}:
            raise ValueError(f"PairSet columns differ in length: queries {n}, others {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.queries)

    def take(self, idx: Sequence[int]) -> PairSet:
        return PairSet(
            [self.queries[i] for i in idx],
            [self.targets[i] for i in idx],
            [self.query_keys[i] for i in idx],
            [self.target_keys[i] for i in idx],
            [self.negatives[i] for i in idx] if self.negatives else [],
        )


class PairConfig(BaseModel, frozen=True, extra="forbid"):
    """How interactions become (query, target) text pairs."""

    positive_threshold: PositiveThreshold = Field(
        "auto", description='rating >= this is positive; None: every event; "auto": decided by the data'
    )
    query: Literal["item", "history"] = "item"
    history_size: int = Field(5, ge=1, description="item: draw the query from the last N positives; history: join N")
    max_pairs_per_user: int | None = Field(200, ge=1, description="keep each user's most recent targets")
    max_pairs: int | None = Field(None, ge=2, description="random subsample of training pairs (time budget)")
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    max_validation_pairs: int = Field(512, ge=0, description="validation passes cost time: keep small")
    hard_negatives: bool = Field(
        False, description="add an item the same user rated below the threshold (1.5x the cost per pair)"
    )
    separator: str = " | "


@dataclass(frozen=True)
class TrainingPairs:
    train: PairSet
    valid: PairSet
    stats: dict[str, object]


def _empty() -> PairSet:
    return PairSet([], [], [], [], [])


def build_pairs(
    interactions: pl.DataFrame,
    item_text: pl.DataFrame,
    *,
    as_of: datetime,
    cfg: PairConfig | None = None,
    seed: int = 42,
) -> TrainingPairs:
    """Pairs from `interactions` strictly before `as_of`; `item_text` has item_id, text (see build_item_text)."""
    cfg = cfg or PairConfig()
    rng = np.random.default_rng(seed)
    texts = item_text.filter(pl.col("text").str.len_chars() > 0).select(S.ITEM_ID, "text")
    rating = pl.col(S.RATING) if S.RATING in interactions.columns else pl.lit(None, dtype=pl.Float64)
    past = (
        interactions.filter(pl.col(S.TIMESTAMP) < as_of)
        .with_row_index("_row")
        .select(S.USER_ID, S.ITEM_ID, S.TIMESTAMP, "_row", rating.alias("_rating"))
        .join(texts, on=S.ITEM_ID, how="inner")
    )
    threshold = resolve_threshold(cfg.positive_threshold, interactions.filter(pl.col(S.TIMESTAMP) < as_of))
    positive = pl.lit(True) if threshold is None else pl.col("_rating").is_null() | (pl.col("_rating") >= threshold)
    past = past.with_columns(positive.alias("_pos"))
    pos = past.filter("_pos").sort(S.USER_ID, S.TIMESTAMP, "_row")
    stats: dict[str, object] = {
        "as_of": as_of.isoformat(),
        "positive_threshold": threshold,
        "events_before_cutoff": past.height,
        "positives": pos.height,
        "users": pos[S.USER_ID].n_unique(),
    }
    if pos.height < 2:
        return TrainingPairs(_empty(), _empty(), {**stats, "train_pairs": 0, "valid_pairs": 0})

    users = pos[S.USER_ID].to_numpy()
    items = pos[S.ITEM_ID].to_numpy()
    text = pos["text"].to_list()
    times = pos[S.TIMESTAMP].to_numpy()
    new_user = np.r_[True, users[1:] != users[:-1]]
    starts = np.flatnonzero(new_user)
    position = np.arange(len(users)) - np.repeat(starts, np.diff(np.r_[starts, len(users)]))
    targets = np.flatnonzero(position >= 1)
    # Most recent targets per user first, capped.
    from_end = np.repeat(np.diff(np.r_[starts, len(users)]), np.diff(np.r_[starts, len(users)])) - 1 - position
    if cfg.max_pairs_per_user is not None:
        targets = targets[from_end[targets] < cfg.max_pairs_per_user]
    depth = np.minimum(position[targets], cfg.history_size)
    if cfg.query == "item":
        offset = 1 + np.floor(rng.random(len(targets)) * depth).astype(np.int64)
        q_rows = targets - offset
        queries = [text[i] for i in q_rows]
        q_keys = [str(items[i]) for i in q_rows]
    else:
        queries = [
            cfg.separator.join(text[t - j] for j in range(1, d + 1)) for t, d in zip(targets, depth, strict=True)
        ]
        q_keys = ["|".join(str(items[t - j]) for j in range(1, d + 1)) for t, d in zip(targets, depth, strict=True)]

    negatives: list[str | None] = (
        _hard_negatives(past, users[targets], rng) if cfg.hard_negatives else [None] * len(targets)
    )
    pairs = PairSet(queries, [text[i] for i in targets], q_keys, [str(items[i]) for i in targets], negatives)

    # Validation: targets in the last fraction of the pre-cutoff time range.
    t_times = times[targets]
    if cfg.validation_fraction > 0:
        lo, hi = pos[S.TIMESTAMP].min(), pos[S.TIMESTAMP].max()
        val_cutoff = np.datetime64(lo + (hi - lo) * (1 - cfg.validation_fraction))  # type: ignore[operator, arg-type]
        is_val = t_times >= val_cutoff
        stats["validation_cutoff"] = str(val_cutoff)
    else:
        is_val = np.zeros(len(targets), dtype=bool)
    train_idx = np.flatnonzero(~is_val)
    val_idx = np.flatnonzero(is_val)
    if len(val_idx) > cfg.max_validation_pairs:
        val_idx = np.sort(rng.choice(val_idx, cfg.max_validation_pairs, replace=False))
    if cfg.max_pairs is not None and len(train_idx) > cfg.max_pairs:
        train_idx = np.sort(rng.choice(train_idx, cfg.max_pairs, replace=False))
    stats.update(
        {
            "train_pairs": len(train_idx),
            "valid_pairs": len(val_idx),
            "with_hard_negative": int(sum(n is not None for n in negatives)),
        }
    )
    return TrainingPairs(pairs.take(train_idx.tolist()), pairs.take(val_idx.tolist()), stats)


def _hard_negatives(past: pl.DataFrame, target_users: np.ndarray, rng: np.random.Generator) -> list[str | None]:
    """For each target's user, a random text of an item they rated below the threshold (None when they have none)."""
    disliked = past.filter(~pl.col("_pos")).sort(S.USER_ID, "_row")
    if disliked.height == 0:
        return [None] * len(target_users)
    d_users = disliked[S.USER_ID].to_numpy()
    d_text = disliked["text"].to_list()
    uniq, first, counts = np.unique(d_users, return_index=True, return_counts=True)
    where = np.searchsorted(uniq, target_users)
    where = np.clip(where, 0, len(uniq) - 1)
    has = uniq[where] == target_users
    pick = first[where] + np.floor(rng.random(len(target_users)) * counts[where]).astype(np.int64)
    return [d_text[p] if h else None for p, h in zip(pick, has, strict=True)]
