"""Item text from catalog fields, with no artefacts for missing fields."""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, Field

from recsys.data import schema as S


class ItemTextConfig(BaseModel, frozen=True, extra="forbid"):
    """Which fields make an item's text, in order. Empty or missing fields are skipped entirely."""

    fields: tuple[str, ...] = (S.TITLE, S.GENRES, S.TAGS, S.DESCRIPTION)
    max_tags: int = Field(10, ge=0)
    separator: str = ". "


def _part(field: str, cfg: ItemTextConfig) -> pl.Expr:
    col = pl.col(field)
    if field == S.TITLE:
        # "Toy Story (1995)" already carries the year; add it only when the title does not.
        has_year = col.str.contains(r"\(\d{4}\)\s*$")
        with_year = pl.when(pl.col(S.YEAR).is_not_null() & ~has_year.fill_null(False))
        return with_year.then(col + " (" + pl.col(S.YEAR).cast(pl.String) + ")").otherwise(col)
    if field == S.GENRES:
        return pl.when(col.list.len() > 0).then("Genres: " + col.list.join(", "))
    if field == S.TAGS:
        return pl.when(col.list.len() > 0).then("Tags: " + col.list.head(cfg.max_tags).list.join(", "))
    stripped = col.cast(pl.String).str.strip_chars()
    return pl.when(stripped.str.len_chars() > 0).then(stripped)


def build_item_text(items: pl.DataFrame, cfg: ItemTextConfig | None = None) -> pl.DataFrame:
    """item_id, text. Needs item_id and the configured fields (missing columns are skipped)."""
    cfg = cfg or ItemTextConfig()
    parts = [_part(f, cfg) for f in cfg.fields if f in items.columns]
    text = pl.concat_list(parts).list.drop_nulls().list.join(cfg.separator) if parts else pl.lit("")
    return items.select(S.ITEM_ID, text.alias("text"))
