"""(user, item) features as of a cutoff: how much of a user's history falls in the candidate's genres."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from features._util import before
from recsys.data import schema as S


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
    as_of=as_of)` computed once by a caller that scores many batches (online re-ranking) — same result.
    """
    genres = items.lazy().select(S.ITEM_ID, pl.col(S.GENRES).alias("_genre")).explode("_genre").drop_nulls("_genre")
    if shares is None:
        shares = user_genre_shares(events, items, as_of=as_of)
    keys = pairs.lazy().select(S.USER_ID, S.ITEM_ID).unique()
    user_shares = shares.lazy().join(keys.select(S.USER_ID).unique(), on=S.USER_ID, how="semi")
    scored = (
        keys.join(genres, on=S.ITEM_ID)
        .join(user_shares, on=[S.USER_ID, "_genre"], how="left")
        .group_by(S.USER_ID, S.ITEM_ID)
        .agg(
            pl.col("_share").fill_null(0).mean().alias("ui_genre_affinity_mean"),
            pl.col("_share").fill_null(0).max().alias("ui_genre_affinity_max"),
        )
    )
    out = pairs.lazy().join(scored, on=[S.USER_ID, S.ITEM_ID], how="left")
    return out.with_columns(pl.col("ui_genre_affinity_mean", "ui_genre_affinity_max").fill_null(0.0)).collect()
