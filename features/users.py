"""User features as of a cutoff: activity, recency, tenure and rating statistics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import polars as pl

from features._util import before, days_since
from recsys.data import schema as S


def user_activity(
    events: pl.DataFrame | pl.LazyFrame, *, as_of: datetime, windows: Sequence[int] = (30,)
) -> pl.DataFrame:
    """Per user with events before `as_of`: user_n_events, user_n_events_{w}d, user_days_since_last,
    user_tenure_days (since the first event), user_rating_mean and user_rating_std (null without ratings).

    Needs user_id, timestamp (and rating when present).
    """
    past = before(events, as_of)
    has_rating = S.RATING in past.collect_schema().names()
    rating = pl.col(S.RATING) if has_rating else pl.lit(None, dtype=pl.Float64)
    out = past.group_by(S.USER_ID).agg(
        pl.len().alias("user_n_events"),
        *[(pl.col(S.TIMESTAMP) >= as_of - timedelta(days=w)).sum().alias(f"user_n_events_{w}d") for w in windows],
        pl.col(S.TIMESTAMP).max().alias("_last_at"),
        pl.col(S.TIMESTAMP).min().alias("_first_at"),
        rating.mean().alias("user_rating_mean"),
        rating.std().alias("user_rating_std"),
    )
    out = out.with_columns(
        days_since("_last_at", as_of).alias("user_days_since_last"),
        days_since("_first_at", as_of).alias("user_tenure_days"),
    )
    return out.drop("_last_at", "_first_at").sort(S.USER_ID).collect()
