"""Point-in-time feature definitions: pure polars functions that take `as_of` and read nothing at or after it.

Imports nothing of ours but `recsys.data.schema`, so training and serving compute features with the same code.
"""

from __future__ import annotations

from features.affinity import genre_affinity, user_genre_shares
from features.items import item_catalog_features, item_popularity
from features.users import user_activity

__all__ = ["genre_affinity", "item_catalog_features", "item_popularity", "user_activity", "user_genre_shares"]
