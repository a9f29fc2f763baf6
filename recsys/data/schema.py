"""Canonical column names and dtypes. Imports nothing of ours (features/ depends on it).

Interactions: one row per event.
    user_id (String), item_id (String), timestamp (Datetime[us], UTC, naive), rating (Float64: an explicit
    rating or an event weight), event_type (String, optional).
Items: one row per catalog item.
    item_id (String), title (String), description (String, nullable), genres (List[String]),
    tags (List[String]), year (Int32, nullable); any further String columns are extra text fields.
"""

from __future__ import annotations

from typing import Final

import polars as pl

USER_ID: Final = "user_id"
ITEM_ID: Final = "item_id"
TIMESTAMP: Final = "timestamp"
RATING: Final = "rating"
EVENT_TYPE: Final = "event_type"

TITLE: Final = "title"
DESCRIPTION: Final = "description"
GENRES: Final = "genres"
TAGS: Final = "tags"
YEAR: Final = "year"

# Output of every recommender and of exported top-K lists.
RANK: Final = "rank"
SCORE: Final = "score"

TIMESTAMP_DTYPE: Final = pl.Datetime("us")

INTERACTION_SCHEMA: Final[dict[str, pl.DataType]] = {
    USER_ID: pl.String(),
    ITEM_ID: pl.String(),
    TIMESTAMP: TIMESTAMP_DTYPE,
    RATING: pl.Float64(),
}
INTERACTION_REQUIRED: Final = (USER_ID, ITEM_ID, TIMESTAMP)
OPTIONAL_INTERACTION_SCHEMA: Final[dict[str, pl.DataType]] = {EVENT_TYPE: pl.String()}

ITEM_SCHEMA: Final[dict[str, pl.DataType]] = {
    ITEM_ID: pl.String(),
    TITLE: pl.String(),
    DESCRIPTION: pl.String(),
    GENRES: pl.List(pl.String()),
    TAGS: pl.List(pl.String()),
    YEAR: pl.Int32(),
}
ITEM_REQUIRED: Final = (ITEM_ID, TITLE)

# A duplicate event is the same user, item and time.
EVENT_KEY: Final = (USER_ID, ITEM_ID, TIMESTAMP)

RECOMMENDATION_SCHEMA: Final[dict[str, pl.DataType]] = {
    USER_ID: pl.String(),
    ITEM_ID: pl.String(),
    RANK: pl.Int32(),
    SCORE: pl.Float64(),
}
