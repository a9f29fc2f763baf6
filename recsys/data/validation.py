"""Validation of interactions and items with an explicit policy per problem.

Every check takes the frame with a `_row` column (1-based data row of the source file) and returns a `Checked`:
the rows kept and the rows quarantined, each quarantined row with its `reason` and `column`. The policy for each
problem is a `Literal` whose default is "error": a `DataValidationError` names the source, the column, the count and
the first bad row, then the fix. Nothing is dropped silently: `drop` moves rows to the quarantine, counted in the
`ValidationReport`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeAlias

import polars as pl
from pydantic import BaseModel, Field

from recsys.data import schema as S
from recsys.data.errors import DataValidationError

ROW: str = "_row"  # 1-based data row in the source file (header excluded)
KNOWN_COLUMNS: frozenset[str] = frozenset({*S.INTERACTION_SCHEMA, *S.OPTIONAL_INTERACTION_SCHEMA, *S.ITEM_SCHEMA})

OnProblem: TypeAlias = Literal["error", "drop"]
OnBadEncoding: TypeAlias = Literal["error", "replace"]


class ValidationPolicy(BaseModel, frozen=True, extra="forbid"):
    """What to do with each kind of bad row. "error" stops with a message; "drop" quarantines and counts."""

    on_missing_value: OnProblem = "error"
    on_bad_type: OnProblem = "error"
    on_duplicate: OnProblem = "error"
    on_unknown_item: OnProblem = "error"
    on_bad_timestamp: OnProblem = "error"
    on_bad_encoding: OnBadEncoding = "error"
    on_ragged_row: OnProblem = Field(
        "error",
        description="a CSV/TSV row with more or fewer fields than the header: error (naming the line) | drop "
        "(quarantined with its raw line)",
    )
    on_unknown_event_type: OnProblem = "error"
    on_out_of_range: OnProblem = Field(
        "error", description="a rating outside the dataset's declared rating_range (dataset spec): error | drop"
    )
    min_timestamp: datetime = Field(datetime(1990, 1, 1), description="earlier events are absurd")
    max_timestamp: datetime | None = Field(None, description="later events are absurd; None = now + 1 day")
    min_kept_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="drop policies may quarantine rows, but a load that keeps less than this share of the events "
        "(or none) is an error: it points at a wrong mapping, unit or file, not at a few bad rows",
    )


@dataclass(frozen=True)
class Checked:
    """Result of one check: rows kept and rows quarantined (with `reason` and `column`)."""

    kept: pl.DataFrame
    quarantined: pl.DataFrame


def _fail(source: str, what: str, column: str | Sequence[str], bad: pl.DataFrame, fix: str) -> DataValidationError:
    col = column if isinstance(column, str) else ",".join(column)
    first = bad[ROW][0] if ROW in bad.columns and bad.height else "?"
    return DataValidationError(
        f"{source}: {bad.height} row(s) with {what} in column '{col}', first at row {first}; {fix}"
    )


def _quarantine(bad: pl.DataFrame, reason: str, column: str) -> pl.DataFrame:
    return bad.with_columns(reason=pl.lit(reason), column=pl.lit(column))


def require_columns(df: pl.DataFrame, required: Iterable[str], *, source: str) -> None:
    """Raise if a required column is missing, suggesting the closest present name (a likely misnaming)."""
    missing = [c for c in required if c not in df.columns]
    if not missing:
        return
    hints = []
    for c in missing:
        # only the file's own names are candidates: a canonical column that is present is not the missing one
        own = [x for x in df.columns if x != ROW and x not in KNOWN_COLUMNS]
        close = difflib.get_close_matches(c, own, n=1, cutoff=0.5)
        hints.append(f"'{c}'" + (f" (did you mean '{close[0]}'? map it with --map {c}={close[0]})" if close else ""))
    present = ", ".join(repr(c) for c in df.columns if c != ROW)
    raise DataValidationError(
        f"{source}: missing required column(s) {', '.join(hints)}; present columns: {present}. "
        "Rename them in the file or give a column mapping."
    )


def require_rows(df: pl.DataFrame, *, source: str) -> None:
    """Raise on an empty source: an empty file is never a valid input."""
    if df.height == 0:
        raise DataValidationError(f"{source}: no data rows (empty file or header only); check the path and export.")


TIMESTAMP_UNITS = ("s", "ms", "us", "iso")


def check_timestamp_unit(unit: str) -> None:
    """An unknown unit is refused (never silently read as ISO)."""
    if unit not in TIMESTAMP_UNITS:
        raise DataValidationError(
            f"timestamp unit {unit!r} is not one of {', '.join(TIMESTAMP_UNITS)} (--timestamp-unit)"
        )


def _parse_timestamp(raw: pl.Expr, unit: str) -> pl.Expr:
    check_timestamp_unit(unit)
    if unit in ("s", "ms", "us"):
        seconds = raw.str.strip_chars().cast(pl.Int64, strict=False)
        return pl.from_epoch(seconds, time_unit=unit).cast(S.TIMESTAMP_DTYPE)  # type: ignore[call-overload]  # stubs: Series only
    # ISO-8601 (date or datetime, optional zone): zone-aware values are converted to UTC, then made naive.
    return pl.coalesce(
        raw.str.to_datetime(time_unit="us", strict=False, time_zone="UTC").dt.replace_time_zone(None),
        raw.str.to_datetime(time_unit="us", strict=False),
        raw.str.to_date(strict=False).cast(S.TIMESTAMP_DTYPE),
    )


def coerce_types(
    df: pl.DataFrame,
    dtypes: dict[str, pl.DataType],
    *,
    source: str,
    on_bad_type: OnProblem = "error",
    timestamp_unit: str = "s",
) -> Checked:
    """Cast raw string columns to `dtypes`; a value that is present but does not parse is a bad type.

    Columns already of the target dtype are left alone. Timestamps parse as epoch numbers in `timestamp_unit`
    ("s", "ms", "us") or, with "iso", as ISO-8601 dates/datetimes.
    """
    casts: dict[str, pl.Expr] = {}
    for col, dtype in dtypes.items():
        if col not in df.columns or df.schema[col] == dtype:
            continue
        raw = pl.col(col)
        if dtype == S.TIMESTAMP_DTYPE and df.schema[col] == pl.String:
            casts[col] = _parse_timestamp(raw, timestamp_unit)
        elif dtype == S.TIMESTAMP_DTYPE and df.schema[col].is_integer():
            unit = timestamp_unit if timestamp_unit != "iso" else "s"
            casts[col] = pl.from_epoch(raw, time_unit=unit)  # type: ignore[call-overload]  # stubs: Series only
        elif df.schema[col] == pl.String and dtype.is_numeric():
            casts[col] = raw.str.strip_chars().cast(dtype, strict=False)
        else:
            casts[col] = raw.cast(dtype, strict=False)
    if not casts:
        return Checked(df, df.clear().with_columns(reason=pl.lit(""), column=pl.lit("")))
    parsed = df.with_columns(**{f"__parsed_{c}": e for c, e in casts.items()})
    bad_parts, bad_mask = [], pl.lit(False)
    for col in casts:
        is_bad = pl.col(col).is_not_null() & pl.col(f"__parsed_{col}").is_null()
        bad = parsed.filter(is_bad & ~bad_mask)
        if bad.height:
            if on_bad_type == "error":
                fix = "fix the values or quarantine them with --policy on_bad_type=drop"
                if dtypes[col] == S.TIMESTAMP_DTYPE and timestamp_unit != "iso" and df.schema[col] == pl.String:
                    iso = df.select(_parse_timestamp(pl.col(col), "iso").is_not_null().mean()).item()
                    if iso and iso > 0.5:  # the column is mostly ISO dates: the unit is wrong, not the rows
                        fix = f"they look like ISO-8601 dates: pass --timestamp-unit iso (not {timestamp_unit!r})"
                raise _fail(source, f"a value that is not {dtypes[col]} (e.g. {bad[col][0]!r})", col, bad, fix)
            bad_parts.append(_quarantine(bad.select(df.columns), "bad_type", col))
        bad_mask = bad_mask | is_bad
    kept = parsed.filter(~bad_mask).with_columns(pl.col(f"__parsed_{c}").alias(c) for c in casts)
    kept = kept.select(df.columns)
    quarantined = pl.concat(bad_parts, how="diagonal_relaxed") if bad_parts else _empty_quarantine(df)
    return Checked(kept, quarantined)


def _empty_quarantine(df: pl.DataFrame) -> pl.DataFrame:
    return df.clear().with_columns(reason=pl.lit("", pl.String), column=pl.lit("", pl.String))


def check_missing(df: pl.DataFrame, columns: Sequence[str], *, source: str, on_missing: OnProblem = "error") -> Checked:
    """Rows with a null (or NaN) in any of `columns`."""
    parts, mask = [], pl.lit(False)
    for col in columns:
        if col not in df.columns:
            continue
        is_bad = pl.col(col).is_null()
        if df.schema[col].is_float():
            is_bad = is_bad | pl.col(col).is_nan()
        bad = df.filter(is_bad & ~mask)
        if bad.height:
            if on_missing == "error":
                raise _fail(
                    source,
                    "a missing value (null/NaN)",
                    col,
                    bad,
                    "fill the values or quarantine them with --policy on_missing_value=drop",
                )
            parts.append(_quarantine(bad, "missing_value", col))
        mask = mask | is_bad
    return Checked(df.filter(~mask), pl.concat(parts, how="diagonal_relaxed") if parts else _empty_quarantine(df))


def check_timestamps(
    df: pl.DataFrame, *, source: str, lo: datetime, hi: datetime, on_bad_timestamp: OnProblem = "error"
) -> Checked:
    """Events before `lo` or after `hi` (epoch-0 defaults, milliseconds read as seconds, clock skew)."""
    is_bad = (pl.col(S.TIMESTAMP) < lo) | (pl.col(S.TIMESTAMP) > hi)
    bad = df.filter(is_bad)
    if bad.height and on_bad_timestamp == "error":
        example = f"epoch second {bad[S.TIMESTAMP].dt.epoch('s')[0]}"  # may not fit a Python datetime
        raise _fail(
            source,
            f"an absurd timestamp outside [{lo:%Y-%m-%d}, {hi:%Y-%m-%d}] (e.g. {example})",
            S.TIMESTAMP,
            bad,
            "check the time unit (s/ms) or quarantine them with --policy on_bad_timestamp=drop",
        )
    return Checked(df.filter(~is_bad), _quarantine(bad, "bad_timestamp", S.TIMESTAMP))


def check_rating_range(
    df: pl.DataFrame, *, source: str, lo: float, hi: float, on_out_of_range: OnProblem = "error"
) -> Checked:
    """Ratings outside the declared scale [lo, hi] (a 77 on a 1-5 scale: a typo, a unit or a different column)."""
    is_bad = (pl.col(S.RATING) < lo) | (pl.col(S.RATING) > hi)
    bad = df.filter(is_bad)
    if bad.height and on_out_of_range == "error":
        raise _fail(
            source,
            f"a rating outside the declared range [{lo:g}, {hi:g}] (e.g. {bad[S.RATING][0]:g})",
            S.RATING,
            bad,
            "fix the rating_range in the dataset spec or quarantine them with --policy on_out_of_range=drop",
        )
    return Checked(df.filter(~is_bad), _quarantine(bad, "rating_out_of_range", S.RATING))


def rating_range_note(ratings: pl.Series, *, source: str) -> str | None:
    """What the report says about ratings without a declared range: the observed range, and a warning when the
    largest rating is far above the bulk (more than twice the 99.9th percentile: likely a typo or another unit)."""
    if ratings.len() == 0:
        return None
    lo, hi = float(ratings.min()), float(ratings.max())  # type: ignore[arg-type]
    bulk = float(ratings.quantile(0.999) or hi)
    note = f"{source}: ratings {lo:g}..{hi:g} observed (no rating_range declared in the dataset spec, none checked)"
    if bulk > 0 and hi > 2 * bulk:
        n = int((ratings > 2 * bulk).sum())
        note += (
            f"; WARNING: {n} rating(s) above {2 * bulk:g}, twice the 99.9th percentile ({bulk:g}): declare "
            "rating_range to check them"
        )
    return note


def check_duplicates(
    df: pl.DataFrame, key: Sequence[str], *, source: str, on_duplicate: OnProblem = "error"
) -> Checked:
    """Rows whose `key` repeats an earlier row (the first occurrence is kept)."""
    dup = ~pl.struct(list(key)).is_first_distinct()
    bad = df.filter(dup)
    if bad.height and on_duplicate == "error":
        raise _fail(
            source,
            f"a duplicate ({', '.join(key)})",
            key,
            bad,
            "deduplicate the file or quarantine repeats with --policy on_duplicate=drop",
        )
    return Checked(df.filter(~dup), _quarantine(bad, "duplicate", ",".join(key)))


def check_known_items(
    df: pl.DataFrame, known: pl.Series, *, source: str, on_unknown_item: OnProblem = "error"
) -> Checked:
    """Interactions whose item_id is not in the catalog."""
    is_bad = ~pl.col(S.ITEM_ID).is_in(known.implode())
    bad = df.filter(is_bad)
    if bad.height and on_unknown_item == "error":
        raise _fail(
            source,
            f"an item id absent from the catalog (e.g. {bad[S.ITEM_ID][0]!r})",
            S.ITEM_ID,
            bad,
            "add the items to the catalog or quarantine those events with --policy on_unknown_item=drop",
        )
    return Checked(df.filter(~is_bad), _quarantine(bad, "unknown_item", S.ITEM_ID))


def check_event_types(
    df: pl.DataFrame, known: Iterable[str], *, source: str, on_unknown_event_type: OnProblem = "error"
) -> Checked:
    """Interactions whose event_type is not among `known` (the event types the dataset spec weights)."""
    known = sorted(known)
    is_bad = ~pl.col(S.EVENT_TYPE).is_in(known)
    bad = df.filter(is_bad)
    if bad.height and on_unknown_event_type == "error":
        unknown = ", ".join(repr(t) for t in bad[S.EVENT_TYPE].unique(maintain_order=True).head(5))
        raise _fail(
            source,
            f"an event type without a weight ({unknown}; weighted: {', '.join(known)})",
            S.EVENT_TYPE,
            bad,
            "add it to event_weights in the dataset spec or quarantine those events with "
            "--policy on_unknown_event_type=drop",
        )
    return Checked(df.filter(~is_bad), _quarantine(bad, "unknown_event_type", S.EVENT_TYPE))


def quarantine_frame(parts: Sequence[tuple[str, pl.DataFrame]]) -> pl.DataFrame:
    """One uniform frame (source, row, reason, column, record as JSON) from per-source quarantined rows."""
    frames = []
    for source, q in parts:
        if q.height == 0:
            continue
        payload = q.drop([ROW, "reason", "column"], strict=False)
        # Temporal values may not fit Python's datetime (year > 9999): render them in polars.
        payload = payload.with_columns(pl.col(c).cast(pl.String) for c, t in payload.schema.items() if t.is_temporal())
        records = [json.dumps(r, default=str, ensure_ascii=False) for r in payload.iter_rows(named=True)]
        frames.append(
            pl.DataFrame(
                {
                    "source": [source] * q.height,
                    "row": q[ROW].cast(pl.Int64) if ROW in q.columns else pl.Series([None] * q.height, dtype=pl.Int64),
                    "reason": q["reason"],
                    "column": q["column"],
                    "record": records,
                }
            )
        )
    if not frames:
        return pl.DataFrame(
            schema={"source": pl.String, "row": pl.Int64, "reason": pl.String, "column": pl.String, "record": pl.String}
        )
    return pl.concat(frames)


def count_reasons(quarantine: pl.DataFrame) -> dict[str, dict[str, int]]:
    """source -> reason -> count."""
    out: dict[str, dict[str, int]] = {}
    for source, reason, n in quarantine.group_by(["source", "reason"]).len().sort(["source", "reason"]).iter_rows():
        out.setdefault(source, {})[reason] = n
    return out


def write_quarantine(quarantine: pl.DataFrame, path: Path) -> Path:
    """Write the quarantine as Parquet (created even when empty, so its absence never means 'nothing dropped')."""
    if path.parent.exists() and not path.parent.is_dir():
        raise DataValidationError(f"quarantine folder {path.parent} is a file: give a folder (--quarantine-dir)")
    path.parent.mkdir(parents=True, exist_ok=True)
    quarantine.write_parquet(path)
    return path
