"""Point-in-time feature definitions (pure polars functions taking `as_of`). Filled by the ranker stage."""
