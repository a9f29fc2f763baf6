"""Loaders for public datasets and for a team's own files; all return a validated `Dataset`.

Public datasets are read at run time from `RECSYS_DATA_DIR` (default `../shared/data` beside the project): their
terms forbid redistribution, so they are never copied into the repository.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import polars as pl

from recsys.data import schema as S
from recsys.data._readers import read_frame, read_table
from recsys.data._recbole import map_index, read_recbole_index, read_recbole_sequences
from recsys.data.dataset import Dataset, validate_dataset
from recsys.data.errors import DataValidationError
from recsys.data.validation import KNOWN_COLUMNS, ROW, ValidationPolicy, check_timestamp_unit

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


def default_data_dir() -> Path:
    """Where the public datasets are when nothing says otherwise: `../shared/data` beside the project root. (The
    settings' `[data] data_dir`, or `$RECSYS_DATA_DIR` read by `recsys.config` at the edge, name another folder.)"""
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def _year_from_title(title: pl.Expr) -> pl.Expr:
    return title.str.extract(r"\((\d{4})\)\s*$", 1).cast(pl.Int32, strict=False)


def load_movielens_100k(
    path: Path | None = None,
    *,
    with_wiki: bool = False,
    policy: ValidationPolicy | None = None,
    quarantine_dir: Path | None = None,
) -> Dataset:
    """MovieLens 100K: `u.data` (tab-separated user, item, rating, unix time) and `u.item` (latin-1, pipe-separated).

    Row order of `u.data` is preserved (the ms-stratified protocol depends on it). With `with_wiki`, the first
    Wikipedia sentence per title (`ml-100k-wiki-summaries/movie_wiki.csv`, joined on the exact title) becomes the
    description.
    """
    root = Path(path) if path else default_data_dir() / "ml-100k"
    ratings = read_frame(
        root / "u.data", separator="\t", has_header=False, names=[S.USER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP]
    )
    raw_items = read_frame(
        root / "u.item",
        separator="|",
        has_header=False,
        encoding="latin-1",
        quote_char=None,
        names=["item_id", "title", "release_date", "video_release_date", "imdb_url", *[f"g{i}" for i in range(19)]],
    )
    flags = [f"g{i}" for i in range(19)]
    items = raw_items.with_columns(
        pl.concat_list([pl.when(pl.col(f) == "1").then(pl.lit(g)) for f, g in zip(flags, ML100K_GENRES, strict=True)])
        .list.drop_nulls()
        .alias(S.GENRES),
        pl.coalesce(
            _year_from_title(pl.col("title")), pl.col("release_date").str.slice(-4).cast(pl.Int32, strict=False)
        ).alias(S.YEAR),
        pl.lit(None, pl.String).alias(S.DESCRIPTION),
    ).drop(flags, "video_release_date")
    if with_wiki:
        items = _join_wiki(items, root.parent / "ml-100k-wiki-summaries" / "movie_wiki.csv")
    return validate_dataset(
        "ml-100k" + ("+wiki" if with_wiki else ""),
        ratings,
        items,
        interactions_source=str(root / "u.data"),
        items_source=str(root / "u.item"),
        policy=policy,
        timestamp_unit="s",
        quarantine_dir=quarantine_dir,
        rating_range=(1.0, 5.0),  # MovieLens 100K's README: 1-5 stars
    )


def _join_wiki(items: pl.DataFrame, path: Path) -> pl.DataFrame:
    wiki = read_frame(path)
    wiki = wiki.select(pl.col("movie_title").alias("title"), pl.col("wiki_summary")).unique("title", keep="first")
    return (
        items.join(wiki, on="title", how="left")
        .with_columns(pl.coalesce(S.DESCRIPTION, "wiki_summary").alias(S.DESCRIPTION))
        .drop("wiki_summary")
    )


def load_movielens_latest(
    path: Path | None = None,
    *,
    with_tmdb: bool = False,
    policy: ValidationPolicy | None = None,
    quarantine_dir: Path | None = None,
) -> Dataset:
    """MovieLens latest (e.g. ml-latest-small): ratings.csv, movies.csv, tags.csv (user tags) and links.csv.

    With `with_tmdb`, TMDb overviews (`tmdb-5000-movies/tmdb_5000_movies.csv`, joined through links.tmdbId)
    become descriptions, and TMDb keywords are added to the tags.
    """
    root = Path(path) if path else default_data_dir() / "ml-latest-small"
    ratings = read_frame(root / "ratings.csv")
    ratings = ratings.rename({"userId": S.USER_ID, "movieId": S.ITEM_ID}, strict=False)
    movies = read_frame(root / "movies.csv")
    movies = movies.rename({"movieId": S.ITEM_ID}, strict=False)
    items = movies.with_columns(
        pl.when(pl.col("genres") == "(no genres listed)")
        .then(pl.lit([], pl.List(pl.String)))
        .otherwise(pl.col("genres").str.split("|"))
        .alias(S.GENRES),
        _year_from_title(pl.col(S.TITLE)).alias(S.YEAR),
        pl.lit(None, pl.String).alias(S.DESCRIPTION),
    )
    tags_path = root / "tags.csv"
    if tags_path.is_file():
        tags = read_frame(tags_path)
        per_item = (
            tags.filter(pl.col("tag").is_not_null())
            .with_columns(pl.col("tag").str.strip_chars().str.to_lowercase())
            .group_by("movieId")
            .agg(pl.col("tag").unique(maintain_order=True).alias(S.TAGS))
            .rename({"movieId": S.ITEM_ID})
        )
        items = items.join(per_item, on=S.ITEM_ID, how="left")
    if with_tmdb:
        items = _join_tmdb(items, root / "links.csv", root.parent / "tmdb-5000-movies" / "tmdb_5000_movies.csv")
    items = items.sort("_row")  # joins may reorder
    return validate_dataset(
        root.name + ("+tmdb" if with_tmdb else ""),
        ratings,
        items,
        interactions_source=str(root / "ratings.csv"),
        items_source=str(root / "movies.csv"),
        policy=policy,
        timestamp_unit="s",
        quarantine_dir=quarantine_dir,
        rating_range=(0.5, 5.0),  # MovieLens latest's README: 0.5-5 stars in half-star steps
    )


def _names(js: str | None) -> list[str]:
    return [d["name"] for d in json.loads(js)] if js else []


def _join_tmdb(items: pl.DataFrame, links_path: Path, tmdb_path: Path) -> pl.DataFrame:
    links = read_frame(links_path)
    tmdb = read_frame(tmdb_path)
    tmdb = tmdb.select(
        pl.col("id").alias("tmdbId"),
        pl.col("overview"),
        pl.col("keywords").map_elements(_names, return_dtype=pl.List(pl.String)).alias("tmdb_keywords"),
    ).unique("tmdbId", keep="first")
    joined = (
        links.select(pl.col("movieId").alias(S.ITEM_ID), "tmdbId").join(tmdb, on="tmdbId", how="inner").drop("tmdbId")
    )
    items = items.join(joined, on=S.ITEM_ID, how="left")
    if S.TAGS not in items.columns:
        items = items.with_columns(pl.lit(None, pl.List(pl.String)).alias(S.TAGS))
    return items.with_columns(
        pl.coalesce(S.DESCRIPTION, "overview").alias(S.DESCRIPTION),
        pl.concat_list(pl.col(S.TAGS).fill_null([]), pl.col("tmdb_keywords").fill_null([]))
        .list.unique(maintain_order=True)
        .alias(S.TAGS),
    ).drop("overview", "tmdb_keywords")


def load_files(
    interactions: Path,
    items: Path,
    *,
    mapping: Mapping[str, str] | None = None,
    list_separator: str = "|",
    separator: str | None = None,
    encoding: str = "utf-8",
    timestamp_unit: str = "s",
    name: str | None = None,
    policy: ValidationPolicy | None = None,
    quarantine_dir: Path | None = None,
    event_weights: Mapping[str, float] | None = None,
    positive_threshold: float | None = None,
    rating_range: tuple[float, float] | None = None,
) -> Dataset:
    """A team's own interaction log and catalog (CSV, TSV or Parquet).

    `mapping` maps canonical names to the file's column names (e.g. {"user_id": "customer", "item_id": "sku"}),
    for both files. String list columns (genres, tags) are split on `list_separator`. Timestamps are epoch numbers in
    `timestamp_unit` ("s", "ms", "us") or ISO-8601 strings ("iso"). A log without a rating column is implicit
    feedback; `event_weights` (e.g. {"view": 1, "cart": 3, "purchase": 5}) turn an event_type column into each
    event's weight, and `positive_threshold` sets which ratings or weights count as positives (see
    `validate_dataset`).
    """
    check_timestamp_unit(timestamp_unit)
    mapping = dict(mapping or {})
    unknown = set(mapping) - set(S.INTERACTION_SCHEMA) - set(S.ITEM_SCHEMA) - {S.EVENT_TYPE}
    if unknown:
        raise DataValidationError(
            f"column mapping: unknown canonical column(s) {sorted(unknown)}; canonical names are "
            f"{sorted({*S.INTERACTION_SCHEMA, *S.ITEM_SCHEMA, S.EVENT_TYPE})}"
        )
    rename = {v: k for k, v in mapping.items()}

    fixed: dict[str, dict[str, int]] = {}
    raw_columns: list[str] = []
    aside: list[tuple[str, pl.DataFrame]] = []  # ragged rows set aside by the reader (counted as read, quarantined)
    repaired: list[tuple[str, pl.DataFrame]] = []  # lines whose invalid bytes were replaced (kept, raw bytes aside)
    pol = policy or ValidationPolicy()

    def read(path: Path) -> pl.DataFrame:
        sep = separator or ("\t" if Path(path).suffix.lower() in (".tsv", ".tab") else ",")
        raw = read_table(
            Path(path),
            separator=sep,
            encoding=encoding,
            on_bad_encoding=pol.on_bad_encoding,
            on_ragged_row=pol.on_ragged_row,
        )
        fixed[str(path)] = {"replaced_invalid_text": raw.n_repaired, "blank_lines_skipped": raw.blank_lines}
        if raw.aside is not None:
            aside.append((str(path), raw.aside))
        if raw.n_repaired:
            repaired.append((str(path), raw.repaired))
        df = raw.frame
        raw_columns.extend(c for c in df.columns if c != ROW and c not in raw_columns)
        return df.rename({k: v for k, v in rename.items() if k in df.columns})

    ev = read(interactions)
    it = read(items)
    for canonical, column in mapping.items():  # a typo in the mapping: point at the file's closest column
        if column in raw_columns:
            continue
        present = [c for c in raw_columns if c not in rename and c not in KNOWN_COLUMNS]
        close = difflib.get_close_matches(column, present, n=1, cutoff=0.5)
        hint = f"; did you mean --map {canonical}={close[0]}?" if close else ""
        raise DataValidationError(
            f"column mapping --map {canonical}={column}: no column {column!r} in {interactions} or {items}{hint} "
            f"(their columns: {', '.join(repr(c) for c in raw_columns)})"
        )
    for col in (S.GENRES, S.TAGS):
        if col in it.columns and it.schema[col] == pl.String:
            it = it.with_columns(
                pl.col(col)
                .str.split(list_separator)
                .list.eval(pl.element().str.strip_chars())
                .list.filter(pl.element().str.len_chars() > 0)
            )
    return validate_dataset(
        name or Path(interactions).stem,
        ev,
        it,
        interactions_source=str(interactions),
        items_source=str(items),
        policy=policy,
        timestamp_unit=timestamp_unit,
        quarantine_dir=quarantine_dir,
        fixed=fixed,
        set_aside=aside,
        repaired=repaired,
        event_weights=event_weights,
        positive_threshold=positive_threshold,
        rating_range=rating_range,
    )


SCIENTIFIC_START = datetime(2018, 1, 1)  # derived timestamps: this + the event's position in its user's sequence (s)


def load_amazon_scientific(
    path: Path | None = None, *, policy: ValidationPolicy | None = None, quarantine_dir: Path | None = None
) -> Dataset:
    """Amazon 2018 "Industrial & Scientific" as preprocessed for UniSRec/VQ-Rec (RecBole benchmark files).

    Each user's sequence is rebuilt from `Scientific.{train,valid,test}.inter` (the earliest prefix, then every
    row's target; every row's history is checked against it, see `recsys.data._recbole`). Ids are the original ones:
    user_id = reviewer id (`Scientific.user2index`), item_id = ASIN (`Scientific.item2index`); the item's title is
    its whole text (`Scientific.text`: title, category path and brand in one string).

    The files have no times and no ratings. **Timestamps are derived from the event order**: 2018-01-01 00:00:00
    plus the event's 0-based position in its user's sequence, in seconds, so every user starts at the same instant
    and only the order within a user means anything (a global time cutoff does not). Every event is an implicit
    positive (rating 1.0). Both facts are stated in the report's notes.

    `Dataset.holdout` names the shipped leave-one-out events: role "valid" (each user's second-to-last event) and
    "test" (the last); the `fixed` protocol evaluates on exactly these.
    """
    root = Path(path) if path else default_data_dir() / "amazon-scientific"
    events = read_recbole_sequences(root, "Scientific")
    events = map_index(events, "user", read_recbole_index(root / "Scientific.user2index"), source=root)
    events = map_index(events, "item", read_recbole_index(root / "Scientific.item2index"), source=root)
    events = events.select(
        pl.col("user").alias(S.USER_ID),
        pl.col("item").alias(S.ITEM_ID),
        (pl.lit(SCIENTIFIC_START, S.TIMESTAMP_DTYPE) + pl.duration(seconds=pl.col("position"))).alias(S.TIMESTAMP),
        "role",
    ).with_row_index("_row", offset=1)  # rows of the rebuilt event table (the files' rows are checked above)
    text_path = root / "Scientific.text"
    text = read_frame(text_path, separator="\t", quote_char=None)
    items = text.rename({"item_id:token": S.ITEM_ID, "text:token_seq": S.TITLE}, strict=False).with_columns(
        pl.col(S.TITLE).str.strip_chars()
    )
    interactions_source = str(root / "Scientific.{train,valid,test}.inter")
    ds = validate_dataset(
        "amazon-scientific",
        events.drop("role"),
        items,
        interactions_source=interactions_source,
        items_source=str(text_path),
        policy=policy,
        quarantine_dir=quarantine_dir,
    )
    holdout = (
        events.filter(pl.col("role") != "train")
        .select(S.USER_ID, S.ITEM_ID, S.TIMESTAMP, "role")
        .join(ds.interactions.select(S.EVENT_KEY), on=list(S.EVENT_KEY), how="semi", maintain_order="left")
    )
    notes = (
        f"{interactions_source}: timestamps derived from event order ({SCIENTIFIC_START:%Y-%m-%d %H:%M:%S} + the "
        "event's position in its user's sequence, in seconds); the files carry no times",
        f"{interactions_source}: implicit feedback, every event a positive (rating 1.0); the files carry no ratings",
        f"{interactions_source}: the shipped leave-one-out hold-out (Dataset.holdout): "
        f"{holdout.filter(pl.col('role') == 'valid').height} valid and "
        f"{holdout.filter(pl.col('role') == 'test').height} test events",
    )
    report = dataclasses.replace(ds.report, notes=(*ds.report.notes, *notes))
    return dataclasses.replace(ds, report=report, holdout=holdout)
