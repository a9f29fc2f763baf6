"""Interest-match scores: how well a candidate item's text matches what a user engaged with before a cutoff.

A user's interest vector is the time-decayed, rating-weighted mean of the embeddings of their positive items
(all their items when they have no positive), re-normalised. For a (user, candidate) pair:

- `im_profile`: cosine between the interest vector and the candidate;
- `im_recent_max` / `im_recent_mean`: max / mean cosine to the user's `recent_n` latest positive items;
- `im_last`: cosine to the user's latest positive item;
- `im_negative`: cosine to the mean of the items the user rated below the threshold (0 when none).

Scores use item text only, so items without interactions ("cold") get them too. Nothing at or after `as_of` is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import polars as pl
import scipy.sparse as sp
from pydantic import BaseModel, Field

from recsys.data import schema as S
from recsys.data.feedback import PositiveThreshold, resolve_threshold
from recsys.encoder.cache import ItemEmbeddings
from recsys.scoring.threads import one_blas_thread

INTEREST_FEATURES: tuple[str, ...] = ("im_profile", "im_recent_max", "im_recent_mean", "im_last", "im_negative")


class InterestConfig(BaseModel, frozen=True, extra="forbid"):
    positive_threshold: PositiveThreshold = Field(
        "auto", description='rating >= this is positive; None: every event; "auto": decided by the data'
    )
    half_life_days: float | None = Field(90.0, gt=0, description="time decay of history weights; None: no decay")
    half_life_events: float | None = Field(
        None,
        gt=0,
        description="recency by position: the user's k-th latest event weighs 0.5^(k / this) in the profile (0 = the "
        "latest); small values make the profile the last item (next-item data), None: no positional decay",
    )
    recent_n: int = Field(10, ge=1)


@dataclass(frozen=True)
class UserInterests:
    """Per-user vectors in `user_ids` order; `recent` holds embedding rows (-1 pads), latest first."""

    user_ids: list[str]
    profile: np.ndarray
    negative: np.ndarray
    recent: np.ndarray
    index: dict[str, int] = field(repr=False)

    def rows(self, users: Sequence[str]) -> np.ndarray:
        """Row per user, -1 for users without history."""
        return np.fromiter((self.index.get(u, -1) for u in users), dtype=np.int64, count=len(users))


def _normalise(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


PROFILE_CHUNK = 65_536  # users per product block: a float64 block of 65k x 384 is 200 MB, whatever the user count


def weighted_profiles(
    users: np.ndarray, items: np.ndarray, weights: np.ndarray, vectors: np.ndarray, n_users: int
) -> np.ndarray:
    """Row u: the normalised sum of weights[e] * vectors[items[e]] over the events e with users[e] = u (float32; zero
    rows for users without events). A sparse users x items product over user blocks: gathering a vector per event
    made an events x dimensions array (15 GB for 10M events at 384 dimensions). Each row sums its events in their
    given order (the CSR keeps them, duplicates unsummed), in float64, as a running sum per event would."""
    order = np.argsort(users, kind="stable")
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    rows = sp.csr_matrix(
        (np.asarray(weights, dtype=np.float64)[order], np.asarray(items)[order], indptr),
        shape=(n_users, len(vectors)),
    )
    out = np.zeros((n_users, vectors.shape[1]), dtype=np.float32)
    for start in range(0, n_users, PROFILE_CHUNK):
        block = rows[start : start + PROFILE_CHUNK]
        out[start : start + block.shape[0]] = _normalise(np.asarray(block @ vectors))
    return out


def user_interests(
    interactions: pl.DataFrame, embeddings: ItemEmbeddings, *, as_of: datetime, cfg: InterestConfig | None = None
) -> UserInterests:
    """Interest vectors of every user with events before `as_of` on embedded items."""
    cfg = cfg or InterestConfig()
    item_row = embeddings.row_of
    rating = pl.col(S.RATING) if S.RATING in interactions.columns else pl.lit(None, dtype=pl.Float64)
    threshold = resolve_threshold(cfg.positive_threshold, interactions.filter(pl.col(S.TIMESTAMP) < as_of))
    positive = pl.lit(True) if threshold is None else rating.is_null() | (rating >= threshold)
    age_days = (pl.lit(as_of) - pl.col(S.TIMESTAMP)).dt.total_seconds() / 86400.0
    decay = 0.5 ** (age_days / cfg.half_life_days) if cfg.half_life_days else pl.lit(1.0)
    past = (
        interactions.filter(pl.col(S.TIMESTAMP) < as_of)
        .with_row_index("_row")
        .with_columns(
            pl.col(S.ITEM_ID).replace_strict(item_row, default=None, return_dtype=pl.Int64).alias("_item"),
            positive.alias("_pos"),
            (decay * rating.fill_null(1.0).clip(lower_bound=1e-3)).alias("_w"),
        )
        .drop_nulls("_item")
    )
    if cfg.half_life_events is not None:  # 0 = the user's latest event (ties: the later row is the later event)
        back = pl.struct(S.TIMESTAMP, "_row").rank("ordinal", descending=True).over(S.USER_ID) - 1
        past = past.with_columns(pl.col("_w") * (0.5 ** (back.cast(pl.Float64) / cfg.half_life_events)))
    # Users with no positive event are described by all their events.
    past = past.with_columns((pl.col("_pos") | ~pl.col("_pos").any().over(S.USER_ID)).alias("_use"))
    users = past[S.USER_ID].unique(maintain_order=True).to_list()
    index = {u: i for i, u in enumerate(users)}
    past = past.with_columns(pl.col(S.USER_ID).replace_strict(index, return_dtype=pl.Int64).alias("_u"))
    n = len(users)

    def weighted_mean(frame: pl.DataFrame) -> np.ndarray:
        return weighted_profiles(
            frame["_u"].to_numpy(), frame["_item"].to_numpy(), frame["_w"].to_numpy(), embeddings.vectors64, n
        )

    liked = past.filter("_use")
    profile = weighted_mean(liked)
    negative = weighted_mean(past.filter(~pl.col("_pos")))
    latest = (
        liked.sort(["_u", S.TIMESTAMP, "_row"], descending=[False, True, True])
        .group_by("_u", maintain_order=True)
        .agg(pl.col("_item").head(cfg.recent_n))
    )
    recent = np.full((n, cfg.recent_n), -1, dtype=np.int64)
    for u, its in zip(latest["_u"].to_list(), latest["_item"].to_list(), strict=True):
        recent[u, : len(its)] = its
    return UserInterests(users, profile, negative, recent, index)


def profile_scores(interests: UserInterests, embeddings: ItemEmbeddings, users: Sequence[str]) -> np.ndarray:
    """Dense im_profile scores (len(users) x n_items, embedding order, float32); users without history get zeros.

    The product runs in float64 (float32 inputs multiply exactly there) and is rounded to float32 once: a float32
    product's last bits depend on how many users BLAS gets at once, which made a user's text scores (and the
    candidates and ranks that follow from them) differ between the nightly batch and an online request of one."""
    rows = interests.rows(users)
    prof = np.zeros((len(users), interests.profile.shape[1]), dtype=np.float64)
    prof[rows >= 0] = interests.profile[rows[rows >= 0]]
    return (prof @ embeddings.vectors64.T).astype(np.float32)


def user_interest_scores(
    interests: UserInterests, vectors: np.ndarray, user_row: int, item_rows: np.ndarray
) -> dict[str, np.ndarray]:
    """The INTEREST_FEATURES of one user (row of `interests`) against items (embedding rows, all valid).

    Computed in float64 and stored as float32: a float32 product's last bit depends on how many rows BLAS gets at
    once, and the batch (all users offline, one user online) must not change a feature."""
    cand = vectors[item_rows].astype(np.float64)
    out = {
        "im_profile": cand @ interests.profile[user_row].astype(np.float64),
        "im_negative": cand @ interests.negative[user_row].astype(np.float64),
    }
    recent = interests.recent[user_row]
    recent = recent[recent >= 0]  # most recent first; -1 pads
    if recent.size:
        sims = cand @ vectors[recent].T.astype(np.float64)
        out |= {"im_last": sims[:, 0], "im_recent_max": sims.max(axis=1), "im_recent_mean": sims.mean(axis=1)}
    else:
        zeros = np.zeros(len(item_rows))
        out |= {"im_last": zeros, "im_recent_max": zeros, "im_recent_mean": zeros}
    return {name: values.astype(np.float32) for name, values in out.items()}


def interest_feature_arrays(
    interests: UserInterests, vectors: np.ndarray, user_rows: np.ndarray, item_rows: np.ndarray
) -> dict[str, np.ndarray]:
    """The INTEREST_FEATURES of pairs given as rows of `interests` and embedding rows of `vectors` (-1 on either
    side: no history or no text, features 0), float32."""
    out = {name: np.zeros(len(user_rows), dtype=np.float32) for name in INTEREST_FEATURES}
    ok = np.flatnonzero((user_rows >= 0) & (item_rows >= 0))
    # One user at a time: their candidates against their profile and recent items as small matrix products (the
    # recent items' vectors are read once per user, not once per candidate).
    # (One BLAS thread: `recsys.scoring.threads`.)
    order = ok[np.argsort(user_rows[ok], kind="stable")]
    bounds = np.flatnonzero(np.diff(user_rows[order])) + 1
    with one_blas_thread():
        for idx in np.split(order, bounds) if order.size else []:
            scores = user_interest_scores(interests, vectors, int(user_rows[idx[0]]), item_rows[idx])
            for name, values in scores.items():
                out[name][idx] = values
    return out


def interest_features(interests: UserInterests, embeddings: ItemEmbeddings, pairs: pl.DataFrame) -> pl.DataFrame:
    """`pairs` (user_id, item_id, ...) with the INTEREST_FEATURES columns added (float32; 0 where undefined)."""
    item_row = embeddings.row_of
    u_rows = interests.rows(pairs[S.USER_ID].to_list())
    i_rows = (
        pairs[S.ITEM_ID].replace_strict(item_row, default=-1, return_dtype=pl.Int64).to_numpy()
        if pairs.height
        else np.zeros(0, dtype=np.int64)
    )
    out = interest_feature_arrays(interests, embeddings.vectors, u_rows, i_rows)
    return pairs.with_columns(pl.Series(name, values) for name, values in out.items())
