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
- `fixed`: the split shipped with the data (`Dataset.holdout`, e.g. amazon-scientific's RecBole leave-one-out
  files): test = the shipped test events, train = every other event, so the shipped valid event is part of the input
  history (as in the published protocol: the history before the test item = train + valid). Candidates are the
  whole catalog (full ranking, no sampled negatives). The inner split (`validation_split`) is leave-last-out of
  train: for amazon-scientific each user's last training event is the shipped valid event (its times follow the
  order); for a team's own holdout it is each user's last training event by time, whatever the holdout's "valid"
  rows say.
- `cold-items`: a seeded random `cold_fraction` (default 20%) of the items with events is held out with all their
  events. Test = those events of users who have training history; train = all other events; candidates are the
  whole catalog. Collaborative models cannot reach a held-out item by construction; the runner also reports each
  model ranking among the held-out items only (slice `cold_only`).

Ties: every recommender breaks score ties by candidate order (`Recommender._top_k`, a stable sort). The candidates
and their order are fixed before any test event is read (the catalog's order, or the order of first appearance in
train for `ms-stratified`), so tie-breaking never depends on which item is the target: a model that gives the target
the same score as other items ranks it where the catalog puts it, not first. (amazon-scientific's catalog follows
`Scientific.text`, ordered by ASIN, unrelated to the users' sequences.)

Seen items: every protocol excludes a user's training items from their ranking, so a test item the user already had
(a repeat: 50 of amazon-scientific's 8,442 test events) cannot be hit. RecBole masks no history for sequential models
(its FullSortEvalDataLoader), so published figures on that split may count these: at most 0.6% of Recall@K.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, TypeAlias, cast

import numpy as np
import polars as pl

from recsys.data import schema as S

ProtocolName: TypeAlias = Literal["ms-stratified", "temporal", "leave-last-out", "fixed", "cold-items"]
PROTOCOLS: tuple[ProtocolName, ...] = ("ms-stratified", "temporal", "leave-last-out", "fixed", "cold-items")
NO_HOLDOUT = "protocol 'fixed' needs a dataset that ships its test events (e.g. amazon-scientific)"
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
    held_out_items: tuple[str, ...] = ()  # cold-items: the items held out with all their events


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
    in_train = pl.Series(ranked["_rank"].to_numpy() <= limit)
    ranked = ranked.drop("_rank", "_count").with_columns(in_train.alias("_frac"))
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
        cutoff = cast(datetime, interactions[S.TIMESTAMP].quantile(1 - test_fraction, interpolation="lower"))
    train = interactions.filter(pl.col(S.TIMESTAMP) < cutoff)
    later = interactions.filter(pl.col(S.TIMESTAMP) >= cutoff)
    if train.height == 0 or later.height == 0:
        ts = interactions[S.TIMESTAMP]
        raise ValueError(
            f"temporal cutoff {cutoff} leaves {'no training' if train.height == 0 else 'no test'} "
            f"events; the data spans {ts.min()!s} to {ts.max()!s}"
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


def split_fixed(interactions: pl.DataFrame, holdout: pl.DataFrame | None) -> Split:
    """The shipped split: test = `holdout` rows with role "test" (matched to `interactions` by user, item and
    timestamp), train = every other event (the shipped valid events included). Test users without training events
    are counted, not judged."""
    if holdout is None or "role" not in holdout.columns:
        raise ValueError(NO_HOLDOUT)
    keys = list(S.EVENT_KEY)
    shipped = holdout.filter(pl.col("role") == "test").select(keys).unique(maintain_order=True)
    if shipped.height == 0:
        raise ValueError(f"{NO_HOLDOUT}; its holdout has no rows with role 'test'")
    marked = interactions.join(
        shipped.with_columns(pl.lit(True).alias("_test")), on=keys, how="left", maintain_order="left"
    ).with_columns(pl.col("_test").fill_null(False))
    found = marked.filter(pl.col("_test")).select(keys).unique()
    if found.height < shipped.height:
        first = shipped.join(found, on=keys, how="anti").row(0)
        raise ValueError(
            f"{shipped.height - found.height} of the holdout's {shipped.height} test events are not in the "
            f"interactions, first {first}; the holdout must name rows of the interactions (were rows dropped?)"
        )
    train = marked.filter(~pl.col("_test")).drop("_test")
    later = marked.filter(pl.col("_test")).drop("_test")
    test = _with_training_history(later, train)
    return Split(
        "fixed",
        train,
        test,
        "catalog",
        params={"holdout": "shipped with the dataset"},
        stats=_stats(train, test, cold_users_dropped=later.height - test.height),
    )


def split_cold_items(interactions: pl.DataFrame, *, cold_fraction: float = 0.2, seed: int = 42) -> Split:
    """Hold out a seeded random `cold_fraction` of the items that have events, with all their events.

    The items are sorted by id, then `np.random.default_rng(seed)` picks round(cold_fraction x n) of them (at least
    one, at most n - 1). Test = the held-out items' events of users with training events; the held-out items' events
    of other users are counted, not judged.
    """
    if not 0 < cold_fraction < 1:
        raise ValueError(f"cold_fraction must be in (0, 1), got {cold_fraction}")
    items = interactions[S.ITEM_ID].unique().sort()
    if items.len() < 2:
        raise ValueError(f"cold-items needs at least 2 items with events, got {items.len()}")
    n_cold = min(max(round(cold_fraction * items.len()), 1), items.len() - 1)
    picked = np.sort(np.random.default_rng(seed).choice(items.len(), size=n_cold, replace=False))
    cold = items.gather(picked)
    is_cold = pl.col(S.ITEM_ID).is_in(cold.implode())
    train = interactions.filter(~is_cold)
    held = interactions.filter(is_cold)
    test = _with_training_history(held, train)
    return Split(
        "cold-items",
        train,
        test,
        "catalog",
        params={"cold_fraction": cold_fraction, "seed": seed},
        stats=_stats(
            train,
            test,
            n_cold_items=n_cold,
            n_cold_events=held.height,
            n_judged_users=test[S.USER_ID].n_unique(),
            cold_user_events_dropped=held.height - test.height,
        ),
        held_out_items=tuple(cold.to_list()),
    )


def _with_training_history(events: pl.DataFrame, train: pl.DataFrame) -> pl.DataFrame:
    """The rows of `events` whose user has training events (the only users a protocol judges)."""
    return events.filter(pl.col(S.USER_ID).is_in(train[S.USER_ID].unique().implode()))


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


def make_split(
    interactions: pl.DataFrame,
    protocol: ProtocolName,
    *,
    seed: int = 42,
    holdout: pl.DataFrame | None = None,
    **kwargs: object,
) -> Split:
    """Dispatch by protocol name. `holdout`: the dataset's shipped hold-out (`Dataset.holdout`), read by `fixed`
    only (which raises a ValueError without one)."""
    if protocol == "fixed":
        return split_fixed(interactions, holdout)
    if protocol == "cold-items":
        return split_cold_items(interactions, seed=seed, **kwargs)  # type: ignore[arg-type]
    if protocol == "ms-stratified":
        return split_ms_stratified(interactions, seed=seed, **kwargs)  # type: ignore[arg-type]
    if protocol == "temporal":
        return split_temporal(interactions, **kwargs)  # type: ignore[arg-type]
    if protocol == "leave-last-out":
        return split_leave_last_out(interactions)
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")


def sample_users(split: Split, max_users: int, *, seed: int, tag: str = "sample") -> tuple[Split, dict[str, object]]:
    """`split` with its hold-out restricted to at most `max_users` users: a seeded sample stratified by the users'
    training history length (bins of log2 of the event count, each bin kept in proportion), so new, light and heavy
    users keep their shares. Below the limit the split is returned as it is. Deterministic: a user is kept by its
    hash with the seed, whatever the row order. The training events stay whole; the split's params record the limit
    and seed under `{tag}_users` / `{tag}_seed`."""
    users = split.test.select(S.USER_ID).unique()
    if users.height <= max_users:
        return split, {"mode": "all", "users": users.height}
    history = split.train.group_by(S.USER_ID).agg(pl.len().alias("_n"))
    ranked = (
        users.join(history, on=S.USER_ID, how="left")
        .with_columns(
            (pl.col("_n").fill_null(0) + 1).log(2).floor().cast(pl.Int32).alias("_bin"),
            pl.col(S.USER_ID).hash(seed).alias("_h"),
        )
        .with_columns(
            pl.col("_h").rank("ordinal").over("_bin").alias("_r"),
            pl.len().over("_bin").alias("_size"),
        )
    )
    share = max_users / users.height
    kept = ranked.filter(pl.col("_r") <= (pl.col("_size") * share).round().clip(1)).select(S.USER_ID)
    test = split.test.join(kept, on=S.USER_ID, how="semi")
    sampled = Split(
        split.protocol,
        split.train,
        test,
        split.candidate_items,
        params={**split.params, f"{tag}_users": max_users, f"{tag}_seed": seed},
        stats=split.stats,
        held_out_items=split.held_out_items,
    )
    return sampled, {"mode": "sample", "users": kept.height, "of": users.height, "seed": seed}


def validation_split(train: pl.DataFrame, protocol: str, *, seed: int = 42) -> Split:
    """An inner split of the training data for choosing hyper-parameters (never the test data).

    Uses the same protocol as the outer split, so the choice transfers; for `temporal`, the cutoff is the 80%
    quantile of the training events; for `cold-items`, another 20% of the training items are held out. For `fixed`
    it is leave-last-out of `train` (each user's last training event is the hold-out: the shipped valid event when
    times follow the shipped order, as in amazon-scientific).
    """
    if protocol == "fixed":
        inner = split_leave_last_out(train)
        return replace(inner, protocol="fixed", params={"inner": "leave-last-out of train"})
    return make_split(train, protocol, seed=seed)  # type: ignore[arg-type]
