from __future__ import annotations

from datetime import datetime

import polars as pl

from recsys.data import schema as S

DAY_SECONDS = 86400.0


def before(events: pl.DataFrame | pl.LazyFrame, as_of: datetime) -> pl.LazyFrame:
    """The events strictly before `as_of`: the first thing every feature function does."""
    return events.lazy().filter(pl.col(S.TIMESTAMP) < as_of)


def days_since(col: str, as_of: datetime) -> pl.Expr:
    return (pl.lit(as_of) - pl.col(col)).dt.total_seconds() / DAY_SECONDS
