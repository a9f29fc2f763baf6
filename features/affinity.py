"""(user, item) features as of a cutoff: how much of a user's history falls in the candidate's genres.

The per-user part (`user_genre_shares`) is a polars function of the events before `as_of`; the per-pair part is one
numpy kernel (`affinity_from_arrays`) over a user x genre share matrix and an item x genre count matrix, so a night
scoring every user and a request scoring one user's candidates compute the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import polars as pl

from features._util import before
from recsys.data import schema as S

AFFINITY_FEATURES: tuple[str, ...] = ("ui_genre_affinity_mean", "ui_genre_affinity_max")


def user_genre_shares(events: pl.DataFrame | pl.LazyFrame, items: pl.DataFrame, *, as_of: datetime) -> pl.DataFrame:
    """user_id, _genre, _share: the share of the user's events before `as_of` on items of each genre."""
    genres = items.lazy().select(S.ITEM_ID, pl.col(S.GENRES).alias("_genre")).explode("_genre").drop_nulls("_genre")
    past = before(events, as_of).select(S.USER_ID, S.ITEM_ID)
    totals = past.group_by(S.USER_ID).agg(pl.len().alias("_n"))
    return (
        past.join(genres, on=S.ITEM_ID)
        .group_by(S.USER_ID, "_genre")
        .agg(pl.len().alias("_k"))
        .join(totals, on=S.USER_ID)
        .select(S.USER_ID, "_genre", (pl.col("_k") / pl.col("_n")).alias("_share"))
        .collect()
    )


def item_genre_counts(items: pl.DataFrame, item_ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(genres, counts): the catalog's genres (sorted) and how often each is listed per item of `item_ids`
    (len(item_ids) x len(genres)); items absent from `items` or without genres get zero rows."""
    pairs = items.select(S.ITEM_ID, S.GENRES).explode(S.GENRES).drop_nulls(S.GENRES)
    genres = sorted(pairs[S.GENRES].unique().to_list())
    col = {g: j for j, g in enumerate(genres)}
    row = {item: i for i, item in enumerate(item_ids)}
    counts = np.zeros((len(item_ids), len(genres)))
    for item, genre in pairs.iter_rows():
        r = row.get(item)
        if r is not None:
            counts[r, col[genre]] += 1
    return genres, counts


def user_share_matrix(shares: pl.DataFrame, user_ids: Sequence[str], genres: Sequence[str]) -> np.ndarray:
    """`user_genre_shares` as a len(user_ids) x len(genres) matrix (0 where a user has no event in a genre)."""
    row = {u: i for i, u in enumerate(user_ids)}
    col = {g: j for j, g in enumerate(genres)}
    out = np.zeros((len(user_ids), len(genres)))
    for user, genre, share in shares.iter_rows():
        r, c = row.get(user), col.get(genre)
        if r is not None and c is not None:
            out[r, c] = share
    return out


def affinity_from_arrays(shares: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """The two affinity features of pairs, from each pair's user share row and item genre-count row (both
    n_pairs x n_genres): the mean of the user's share over the item's listed genres (a genre listed twice counts
    twice), and the maximum; 0 for items without genres."""
    n_genres = counts.sum(axis=1)
    total = (counts * shares).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_genres > 0, total / n_genres, 0.0)
    masked = np.where(counts > 0, shares, -np.inf)
    top = np.where(n_genres > 0, masked.max(axis=1, initial=-np.inf), 0.0)
    return {"ui_genre_affinity_mean": mean, "ui_genre_affinity_max": top}


def genre_affinity(
    events: pl.DataFrame | pl.LazyFrame,
    items: pl.DataFrame,
    pairs: pl.DataFrame,
    *,
    as_of: datetime,
    shares: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """`pairs` (user_id, item_id, ...) plus ui_genre_affinity_mean and ui_genre_affinity_max: the share of the
    user's events before `as_of` on items of each of the candidate's genres, averaged / maximised over those genres
    (0 for items without genres or users without history).

    Needs events user_id, item_id, timestamp; items item_id, genres. `shares`: `user_genre_shares(events, items,
    as_of=as_of)` computed once by a caller that scores many batches — same result.
    """
    if shares is None:
        shares = user_genre_shares(events, items, as_of=as_of)
    users = pairs[S.USER_ID].unique(maintain_order=True).to_list()
    item_ids = pairs[S.ITEM_ID].unique(maintain_order=True).to_list()
    genres, counts = item_genre_counts(items, item_ids)
    share = user_share_matrix(shares, users, genres)
    u = pairs[S.USER_ID].replace_strict({x: i for i, x in enumerate(users)}, return_dtype=pl.Int64).to_numpy()
    i = pairs[S.ITEM_ID].replace_strict({x: j for j, x in enumerate(item_ids)}, return_dtype=pl.Int64).to_numpy()
    feats = affinity_from_arrays(share[u], counts[i])
    return pairs.with_columns(pl.Series(name, values, dtype=pl.Float64) for name, values in feats.items())
