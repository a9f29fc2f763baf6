"""Evaluation protocols: how interactions become (train, test) and which users and items are judged.

- `ms-stratified`: Microsoft Recommenders' `python_stratified_split(filter_by="item", ratio=0.75, seed=42)`
  exactly: one uniform random number per row in input order (legacy `RandomState(seed).rand`), rows ranked within
  each item by that number, a row is train when rank <= round(ratio * count) (half to even). Every test rating is
  relevant; the candidate items are those seen in training (as in every MS Recommenders model).
- `temporal`: one global cutoff (default: the 80% quantile of timestamps). Train = events before it, test = events at
  or after it, for users with training history (users without are counted, not judged). Candidates are the whole
  catalog, so items without training events ("cold") can be recommended and are reported as their own slice.
- `leave-last-out`: each user's last event by time (ties broken by input order) is the test; users with a single
  event are kept entirely in train. Candidates are the whole catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeAlias

import numpy as np
import polars as pl

from recsys.data import schema as S

ProtocolName: TypeAlias = Literal["ms-stratified", "temporal", "leave-last-out"]
PROTOCOLS: tuple[ProtocolName, ...] = ("ms-stratified", "temporal", "leave-last-out")
CandidateItems: TypeAlias = Literal["train", "catalog"]


@dataclass(frozen=True)
class Split:
    """Train and test interactions plus the judging rules of the protocol."""

    protocol: str
    train: pl.DataFrame
    test: pl.DataFrame
    candidate_items: CandidateItems  # which items a recommender may rank
    params: dict[str, object] = field(default_factory=dict)
    stats: dict[str, object] = field(default_factory=dict)


def split_ms_stratified(
    interactions: pl.DataFrame, *, ratio: float = 0.75, seed: int = 42, filter_by: Literal["item", "user"] = "item"
) -> Split:
    """Per-item (or per-user) stratified random split, identical to MS Recommenders' python_stratified_split.

    One uniform number per row in input order (`RandomState(seed).rand`); rows ordered by it within each item; a
    row is train when its 1-based rank <= round(ratio * count), numpy rounding half to even.
    """
    if not 0 < ratio < 1:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    by = S.ITEM_ID if filter_by == "item" else S.USER_ID
    rnd = np.random.RandomState(seed).rand(interactions.height)
    ranked = interactions.with_columns(pl.Series("_rand", rnd), pl.int_range(pl.len()).alias("_pos")).with_columns(
        pl.col("_rand").rank("ordinal").over(by).alias("_rank"), pl.len().over(by).alias("_count")
    )
    # MS: rank <= round(ratio * count), with numpy's round-half-to-even (a single-event item goes to train).
    limit = np.round(ratio * ranked["_count"].to_numpy().astype(np.float64))
    is_train = pl.Series(ranked["_rank"].to_numpy() <= limit)
    ranked = ranked.drop("_rank", "_count").with_columns(is_train.alias("_frac"))
    is_train = pl.col("_frac")
    train = ranked.filter(is_train).sort("_pos").drop("_rand", "_pos", "_frac")
    test = ranked.filter(~is_train).sort("_pos").drop("_rand", "_pos", "_frac")
    # A user seen only in test cannot be scored by collaborative models (MS's SAR raises); judge them out.
    known = train[S.USER_ID].unique().implode()
    dropped_users = test.filter(~pl.col(S.USER_ID).is_in(known))[S.USER_ID].n_unique()
    test = test.filter(pl.col(S.USER_ID).is_in(known))
    return Split(
        "ms-stratified",
        train,
        test,
        "train",
        params={"ratio": ratio, "seed": seed, "filter_by": filter_by},
        stats=_stats(train, test, cold_users_dropped=dropped_users),
    )


def split_temporal(interactions: pl.DataFrame, *, cutoff: datetime | None = None, test_fraction: float = 0.2) -> Split:
    """Global time cutoff; `cutoff` defaults to the (1 - test_fraction) quantile of event times."""
    if cutoff is None:
        cutoff = interactions[S.TIMESTAMP].quantile(1 - test_fraction, interpolation="lower")
    train = interactions.filter(pl.col(S.TIMESTAMP) < cutoff)
    later = interactions.filter(pl.col(S.TIMESTAMP) >= cutoff)
    if train.height == 0 or later.height == 0:
        ts = interactions[S.TIMESTAMP]
        raise ValueError(
            f"temporal cutoff {cutoff} leaves {'no training' if train.height == 0 else 'no test'} "
            f"events; the data spans {ts.min()} to {ts.max()}"
        )
    known = train[S.USER_ID].unique().implode()
    test = later.filter(pl.col(S.USER_ID).is_in(known))
    cold_users = later.filter(~pl.col(S.USER_ID).is_in(known))
    return Split(
        "temporal",
        train,
        test,
        "catalog",
        params={"cutoff": str(cutoff), "test_fraction": test_fraction},
        stats=_stats(
            train, test, cold_users_dropped=cold_users[S.USER_ID].n_unique(), cold_user_events_dropped=cold_users.height
        ),
    )


def split_leave_last_out(interactions: pl.DataFrame) -> Split:
    """Each user's last event (by time, then input order) is the test; single-event users stay in train."""
    ordered = interactions.with_columns(pl.int_range(pl.len()).alias("_pos"))
    ranked = ordered.with_columns(
        pl.struct(S.TIMESTAMP, "_pos").rank("ordinal", descending=True).over(S.USER_ID).alias("_r"),
        pl.len().over(S.USER_ID).alias("_n"),
    )
    is_test = (pl.col("_r") == 1) & (pl.col("_n") > 1)
    train = ranked.filter(~is_test).sort("_pos").drop("_pos", "_r", "_n")
    test = ranked.filter(is_test).sort("_pos").drop("_pos", "_r", "_n")
    return Split("leave-last-out", train, test, "catalog", params={}, stats=_stats(train, test))


def _stats(train: pl.DataFrame, test: pl.DataFrame, **extra: object) -> dict[str, object]:
    train_items = train[S.ITEM_ID].unique().implode()
    cold = test.filter(~pl.col(S.ITEM_ID).is_in(train_items))
    return {
        "n_train": train.height,
        "n_test": test.height,
        "n_test_users": test[S.USER_ID].n_unique(),
        "n_test_cold_item_events": cold.height,
        "n_test_cold_items": cold[S.ITEM_ID].n_unique(),
        **extra,
    }


def make_split(interactions: pl.DataFrame, protocol: ProtocolName, *, seed: int = 42, **kwargs: object) -> Split:
    """Dispatch by protocol name."""
    if protocol == "ms-stratified":
        return split_ms_stratified(interactions, seed=seed, **kwargs)  # type: ignore[arg-type]
    if protocol == "temporal":
        return split_temporal(interactions, **kwargs)  # type: ignore[arg-type]
    if protocol == "leave-last-out":
        return split_leave_last_out(interactions)
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")


def validation_split(train: pl.DataFrame, protocol: str, *, seed: int = 42) -> Split:
    """An inner split of the training data for choosing hyper-parameters (never the test data).

    Uses the same protocol as the outer split, so the choice transfers; for `temporal`, the cutoff is the 80%
    quantile of the training events.
    """
    return make_split(train, protocol, seed=seed)  # type: ignore[arg-type]
