"""Item features as of a cutoff: popularity over windows and its trend, age, rating statistics, catalog facts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import polars as pl

from features._util import before, days_since
from recsys.data import schema as S


def item_popularity(
    events: pl.DataFrame | pl.LazyFrame,
    *,
    as_of: datetime,
    windows: Sequence[int] = (7, 30, 90),
    rating_prior: float = 10.0,
) -> pl.DataFrame:
    """Per item with events before `as_of`: item_pop_all, item_pop_{w}d (events in the trailing w days),
    item_users_all, item_trend (daily rate of the shortest window over the longest, +1 smoothed),
    item_age_days (since its first event), item_days_since_last, item_rating_mean (shrunk towards the global mean
    with `rating_prior` pseudo-ratings) and item_rating_count.

    Needs item_id, timestamp (and rating when present).
    """
    past = before(events, as_of)
    has_rating = S.RATING in past.collect_schema().names()
    rating = pl.col(S.RATING) if has_rating else pl.lit(None, dtype=pl.Float64)
    global_mean = past.select(rating.mean()).collect().item() if has_rating else None
    aggs = [
        pl.len().alias("item_pop_all"),
        pl.col(S.USER_ID).n_unique().alias("item_users_all"),
        *[(pl.col(S.TIMESTAMP) >= as_of - timedelta(days=w)).sum().alias(f"item_pop_{w}d") for w in windows],
        pl.col(S.TIMESTAMP).min().alias("_first_at"),
        pl.col(S.TIMESTAMP).max().alias("_last_at"),
        rating.count().alias("item_rating_count"),
        rating.sum().alias("_rating_sum"),
    ]
    out = past.group_by(S.ITEM_ID).agg(aggs)
    lo, hi = min(windows), max(windows)
    prior = (global_mean or 0.0) * rating_prior
    out = out.with_columns(
        ((pl.col(f"item_pop_{lo}d") / lo + 1.0 / hi) / (pl.col(f"item_pop_{hi}d") / hi + 1.0 / hi)).alias("item_trend"),
        days_since("_first_at", as_of).alias("item_age_days"),
        days_since("_last_at", as_of).alias("item_days_since_last"),
        ((pl.col("_rating_sum").fill_null(0) + prior) / (pl.col("item_rating_count") + rating_prior)).alias(
            "item_rating_mean"
        ),
    )
    return out.drop("_first_at", "_last_at", "_rating_sum").sort(S.ITEM_ID).collect()


def item_catalog_features(items: pl.DataFrame, *, as_of: datetime) -> pl.DataFrame:
    """From the catalog alone (valid for items without events): item_years_since_release (as_of year - year, null
    when unknown), item_n_genres, item_has_description."""
    cols = items.columns
    year = pl.col(S.YEAR) if S.YEAR in cols else pl.lit(None, dtype=pl.Int32)
    genres = pl.col(S.GENRES).list.len() if S.GENRES in cols else pl.lit(0)
    desc = pl.col(S.DESCRIPTION).fill_null("").str.len_chars() > 0 if S.DESCRIPTION in cols else pl.lit(False)
    return items.select(
        S.ITEM_ID,
        (pl.lit(as_of.year) - year).cast(pl.Float64).alias("item_years_since_release"),
        genres.fill_null(0).cast(pl.Int32).alias("item_n_genres"),
        desc.alias("item_has_description"),
    )
