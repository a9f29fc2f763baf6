"""Reading RecBole "benchmark" files (one row per prefix) back into each user's ordered event sequence.

RecBole's leave-one-out benchmark files (`<name>.train.inter`, `.valid.inter`, `.test.inter`) hold one row per
prediction: `user_id:token`, `item_id_list:token_seq` (the space-separated history before the target, cut to its
last `max_history` items) and `item_id:token` (the target). Per user, the train rows come longest prefix first (the
order RecBole writes them), then one valid row (target = second-to-last item), then one test row (target = last).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recsys.data._readers import read_frame
from recsys.data.errors import DataValidationError
from recsys.data.validation import ROW, require_columns, require_rows

RECBOLE_MAX_HISTORY = 50  # RecBole's default MAX_ITEM_LIST_LENGTH
ROLES = ("train", "valid", "test")
_USER, _HISTORY, _TARGET = "user_id:token", "item_id_list:token_seq", "item_id:token"


def _read_inter(path: Path, role: str) -> pl.DataFrame:
    df = read_frame(path, separator="\t", quote_char=None)
    require_rows(df, source=str(path))
    require_columns(df, (_USER, _HISTORY, _TARGET), source=str(path))
    missing = df.filter(pl.col(_USER).is_null() | pl.col(_TARGET).is_null())
    if missing.height:
        raise DataValidationError(
            f"{path}: {missing.height} row(s) without a user or a target item, first at row {missing[ROW][0]}; "
            "re-copy the file (see the dataset's SOURCE.md)"
        )
    return df.select(
        pl.col(_USER).alias("user"),
        pl.col(_HISTORY).str.split(" ").fill_null(pl.lit([], pl.List(pl.String))).alias("history"),
        pl.col(_TARGET).alias("target"),
        pl.lit(role).alias("role"),
        pl.lit(ROLES.index(role)).alias("_role_rank"),
        pl.col(ROW),
        pl.lit(str(path)).alias("_source"),
    )


def read_recbole_sequences(root: Path, name: str, *, max_history: int = RECBOLE_MAX_HISTORY) -> pl.DataFrame:
    """Every event of every user, rebuilt from `root/<name>.{train,valid,test}.inter`.

    The sequence is the history of the user's earliest row followed by the targets of all rows in order (train
    rows reversed, valid, test); each row's history must then equal the `max_history` items before its target,
    which checks the whole file set (a mismatch raises `DataValidationError` naming the file and row).

    Returns one row per event: user and item (the files' indexes, strings), position (0-based within the user's
    sequence) and role ("train", "valid" or "test": which file has it as a target; the items of the earliest
    history are "train").
    """
    root = Path(root)
    rows = pl.concat([_read_inter(root / f"{name}.{role}.inter", role) for role in ROLES])
    per_user = rows.group_by("user").agg(
        (pl.col("role") == "valid").sum().alias("n_valid"), (pl.col("role") == "test").sum().alias("n_test")
    )
    bad = per_user.filter((pl.col("n_valid") != 1) | (pl.col("n_test") != 1)).sort("user")
    if bad.height:
        bad_row = bad.row(0, named=True)
        raise DataValidationError(
            f"{root / name}.{{valid,test}}.inter: {bad.height} user(s) without exactly one valid and one test row, "
            f"bad_row user {bad_row['user']} ({bad_row['n_valid']} valid, {bad_row['n_test']} test); "
            "the files are not one leave-one-out split: re-copy them (see SOURCE.md)"
        )
    # train rows are written longest prefix first: the latest comes first, so a higher file row is earlier
    rows = rows.sort(["user", "_role_rank", ROW], descending=[False, False, True], maintain_order=True)
    rows = rows.with_columns(pl.int_range(pl.len()).over("user").alias("_j"))
    first = rows.filter(pl.col("_j") == 0).select("user", pl.col("history").alias("_prefix"))
    targets = rows.group_by("user", maintain_order=True).agg(pl.col("target").alias("_targets"))
    seqs = first.join(targets, on="user").with_columns(
        pl.concat_list("_prefix", "_targets").alias("_sequence"), pl.col("_prefix").list.len().alias("_offset")
    )

    # Each row's history must be the (at most max_history) items before its target in the rebuilt sequence.
    checked = rows.join(seqs.select("user", "_sequence", "_offset"), on="user").with_columns(
        (pl.col("_offset") + pl.col("_j")).alias("_i")
    )
    n_expected = pl.min_horizontal(pl.col("_i"), pl.lit(max_history))
    expected = pl.col("_sequence").list.slice(pl.col("_i") - n_expected, n_expected)
    mismatch = checked.filter(pl.col("history") != expected).sort("_role_rank", ROW)
    if mismatch.height:
        m = mismatch.row(0, named=True)
        raise DataValidationError(
            f"{m['_source']}: {mismatch.height} row(s) whose item_id_list does not match the user's sequence rebuilt "
            f"from the train prefixes, valid and test rows, first at row {m[ROW]} (user {m['user']}); the files are "
            "not one RecBole leave-one-out split: re-copy them (see SOURCE.md)"
        )

    prefix_events = (
        first.with_columns(pl.int_ranges(0, pl.col("_prefix").list.len()).alias("position"))
        .explode("_prefix", "position")
        .drop_nulls("_prefix")
        .select(
            "user", pl.col("_prefix").alias("item"), pl.col("position").cast(pl.Int64), pl.lit("train").alias("role")
        )
    )
    target_events = checked.select("user", pl.col("target").alias("item"), pl.col("_i").alias("position"), "role")
    events = pl.concat([prefix_events, target_events])
    return events.sort(pl.col("user").cast(pl.Int64, strict=False), "user", "position", maintain_order=True)


def read_recbole_index(path: Path) -> pl.DataFrame:
    """An `<name>.user2index` / `<name>.item2index` file (id TAB 0-based index, no header): columns id, index."""
    df = read_frame(path, separator="\t", has_header=False, names=["id", "index"], quote_char=None)
    require_rows(df, source=str(path))
    dup = df.filter(pl.col("index").is_duplicated() | pl.col("id").is_duplicated())
    if dup.height:
        raise DataValidationError(
            f"{path}: {dup.height} row(s) with a repeated id or index, first at row {dup[ROW][0]}; re-copy the file"
        )
    return df.select("id", "index")


def map_index(events: pl.DataFrame, column: str, index: pl.DataFrame, *, source: Path) -> pl.DataFrame:
    """Replace the index in `column` by its id from `index` (see `read_recbole_index`); an unknown index raises."""
    mapped = events.join(index.rename({"index": column, "id": "_id"}), on=column, how="left", maintain_order="left")
    unknown = mapped.filter(pl.col("_id").is_null())
    if unknown.height:
        raise DataValidationError(
            f"{source}: {unknown[column].n_unique()} {column} index value(s) used in the .inter files are missing, "
            f"e.g. {unknown[column][0]!r}; re-copy the index file with the .inter files"
        )
    return mapped.drop(column).rename({"_id": column}).select(events.columns)
