"""Point-in-time feature definitions: pure polars functions that take `as_of` and read nothing at or after it.

Imports nothing of ours but `recsys.data.schema`, so training and serving compute features with the same code.
"""

from __future__ import annotations

from features.affinity import (
    AFFINITY_FEATURES,
    affinity_from_arrays,
    genre_affinity,
    item_genre_counts,
    user_genre_shares,
    user_share_matrix,
)
from features.items import item_catalog_features, item_popularity
from features.users import user_activity

__all__ = [
    "AFFINITY_FEATURES",
    "affinity_from_arrays",
    "genre_affinity",
    "item_catalog_features",
    "item_genre_counts",
    "item_popularity",
    "user_activity",
    "user_genre_shares",
    "user_share_matrix",
]
