"""The validated dataset: interactions + items, the validation report and a content fingerprint."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path

import polars as pl

from recsys.data import schema as S
from recsys.data.errors import DataValidationError, DataWarning
from recsys.data.feedback import Feedback, infer_feedback
from recsys.data.report import ValidationReport
from recsys.data.validation import (
    ROW,
    Checked,
    ValidationPolicy,
    check_duplicates,
    check_event_types,
    check_known_items,
    check_missing,
    check_rating_range,
    check_timestamps,
    coerce_types,
    count_reasons,
    quarantine_frame,
    rating_range_note,
    require_columns,
    require_rows,
    write_quarantine,
)


@dataclass(frozen=True)
class Dataset:
    """Validated interactions and items in the canonical schema (see `recsys.data.schema`)."""

    name: str
    interactions: pl.DataFrame
    items: pl.DataFrame
    report: ValidationReport
    quarantine: pl.DataFrame  # source, row, reason, column, record (JSON): every row not kept
    feedback: Feedback | None = None  # explicit or implicit; None: inferred from `interactions` on construction
    # The hold-out shipped with the data (e.g. a benchmark's leave-one-out files), else None: user_id, item_id,
    # timestamp (rows of `interactions` by EVENT_KEY) and role, "valid" or "test". The `fixed` protocol uses it.
    holdout: pl.DataFrame | None = None

    def __post_init__(self) -> None:
        if self.feedback is None:  # every dataset says which feedback was assumed (summary, reports, nightly)
            object.__setattr__(self, "feedback", infer_feedback(self.interactions))

    @property
    def ships_split(self) -> bool:
        """Whether the data came with its own hold-out (the `fixed` protocol's split)."""
        return self.holdout is not None

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over the canonical content of both frames (order-sensitive, version-stable); computed once."""
        return fingerprint_frames(self.interactions, self.items)

    def summary(self) -> dict[str, object]:
        ts = self.interactions[S.TIMESTAMP]
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "n_interactions": self.interactions.height,
            "n_users": self.interactions[S.USER_ID].n_unique(),
            "n_items": self.items.height,
            "n_items_with_interactions": self.interactions[S.ITEM_ID].n_unique(),
            "time_range": [str(ts.min()), str(ts.max())],
            "feedback": self.feedback.to_dict() if self.feedback else None,
            **({"holdout": _role_counts(self.holdout)} if self.holdout is not None else {}),
            "validation": self.report.to_dict(),
        }


def _role_counts(holdout: pl.DataFrame) -> dict[str, int]:
    return dict(holdout.group_by("role").len().sort("role").iter_rows())


def after_last_event(events: pl.DataFrame) -> datetime:
    """The earliest cutoff that includes every event of `events` (its last timestamp + 1 microsecond)."""
    return events[S.TIMESTAMP].max() + timedelta(microseconds=1)  # type: ignore[operator,return-value]


# Rows of a column joined into one string at a time by `fingerprint_frames` (its memory: that string, not the column).
FINGERPRINT_ROWS = 1 << 20


def fingerprint_frames(*frames: pl.DataFrame) -> str:
    """sha256 of each column rendered as text (values joined by US, 0x1f); lists joined by '|', nulls as NUL.
    Independent of file formats. Hashed FINGERPRINT_ROWS values at a time, joined by polars: the same digest as one
    string of the whole column, without ten million Python strings for a ten-million-event log (12 s and 1.4 GB)."""
    h = hashlib.sha256()
    for df in frames:
        h.update(f"{df.height}x{df.width}".encode())
        for name in df.columns:
            col = df[name]
            if isinstance(col.dtype, pl.List):
                col = col.list.join("|")
            text = col.cast(pl.String).fill_null("\x00")
            h.update(name.encode())
            for lo in range(0, len(text), FINGERPRINT_ROWS):
                if lo:
                    h.update(b"\x1f")
                h.update(str(text.slice(lo, FINGERPRINT_ROWS).str.join("\x1f").item()).encode())
    return h.hexdigest()


# An item text longer than this is kept but reported: the encoder reads its first `max_length` tokens only, so the
# rest costs tokenizing time and memory for nothing (a whole PDF pasted into a description, a runaway export).
LONG_TEXT_CHARS = 100_000


def _interaction_dtypes(df: pl.DataFrame) -> dict[str, pl.DataType]:
    dtypes = dict(S.INTERACTION_SCHEMA)
    if S.EVENT_TYPE in df.columns:
        dtypes.update(S.OPTIONAL_INTERACTION_SCHEMA)
    return dtypes


def validate_dataset(
    name: str,
    raw_interactions: pl.DataFrame,
    raw_items: pl.DataFrame,
    *,
    interactions_source: str,
    items_source: str,
    policy: ValidationPolicy | None = None,
    timestamp_unit: str = "s",
    quarantine_dir: Path | None = None,
    fixed: dict[str, dict[str, int]] | None = None,
    set_aside: Sequence[tuple[str, pl.DataFrame]] = (),
    repaired: Sequence[tuple[str, pl.DataFrame]] = (),
    event_weights: Mapping[str, float] | None = None,
    positive_threshold: float | None = None,
    rating_range: tuple[float, float] | None = None,
) -> Dataset:
    """Validate raw frames (each with `_row`) into a `Dataset`.

    Items: item_id and title columns required; missing ids, bad years and duplicate ids follow the policy; an item
    without a title is kept (its text is whatever other text fields it has), warned about and counted
    (`report.flagged`), and its events stay.
    Interactions: user_id, item_id, timestamp required (rating defaults to 1.0 when absent); bad types, missing
    values, absurd timestamps, duplicate (user, item, timestamp) events and item ids absent from the catalog follow
    the policy. Quarantined rows are written to `quarantine_dir/quarantine.parquet` when given. `set_aside`: rows the
    reader already quarantined per source (ragged rows), counted as read; `repaired`: per source, the lines whose
    invalid bytes were replaced (line, raw, text), written to `quarantine_dir/repaired.parquet`.

    Feedback (`Dataset.feedback`, see `recsys.data.feedback.infer_feedback`): with `event_weights` (event type ->
    weight) the rating column becomes each event's weight (an event_type column is required; types without a weight
    follow `policy.on_unknown_event_type`) and the data is implicit; without a rating column it is implicit too
    (every event a positive). `positive_threshold` (from a dataset spec) overrides the inferred threshold.
    `rating_range` (lo, hi): ratings outside it follow `policy.on_out_of_range`; without it the observed range is
    reported (with a warning when the largest ratings are far above the bulk).
    """
    policy = policy or ValidationPolicy()
    notes: list[str] = []
    quarantined: list[tuple[str, pl.DataFrame]] = list(set_aside)
    n_aside = {src: sum(f.height for s, f in set_aside if s == src) for src, _ in set_aside}

    def step(source: str, checked: Checked) -> pl.DataFrame:
        quarantined.append((source, checked.quarantined))
        return checked.kept

    # Items
    require_rows(raw_items, source=items_source)
    require_columns(raw_items, S.ITEM_REQUIRED, source=items_source)
    items = raw_items
    for col, dtype in S.ITEM_SCHEMA.items():
        if col not in items.columns:
            items = items.with_columns(pl.lit(None, dtype).alias(col))
    items = step(
        items_source,
        coerce_types(
            items, {S.ITEM_ID: pl.String(), S.YEAR: pl.Int32()}, source=items_source, on_bad_type=policy.on_bad_type
        ),
    )
    items = step(
        items_source,
        check_missing(items, [S.ITEM_ID], source=items_source, on_missing=policy.on_missing_value),
    )
    untitled = items.filter(pl.col(S.TITLE).is_null() | (pl.col(S.TITLE).str.strip_chars() == ""))
    if untitled.height:
        first = untitled[ROW][0] if ROW in untitled.columns else "?"
        msg = (
            f"{items_source}: {untitled.height} item(s) without a title, first at row {first}: kept, with their "
            "events; the encoder reads their other text fields (genres, tags, description), if any"
        )
        warnings.warn(msg, DataWarning, stacklevel=2)
        notes.append(msg)
    text_len = sum(pl.col(c).str.len_chars().fill_null(0) for c in (S.TITLE, S.DESCRIPTION) if c in items.columns)
    very_long = items.filter(text_len > LONG_TEXT_CHARS)
    if very_long.height:
        first = very_long[ROW][0] if ROW in very_long.columns else "?"
        msg = (
            f"{items_source}: {very_long.height} item(s) with more than {LONG_TEXT_CHARS:,} characters of text, first "
            f"at row {first}: kept; the encoder reads only their first max_length tokens ([encoder.model])"
        )
        warnings.warn(msg, DataWarning, stacklevel=2)
        notes.append(msg)
    items = step(
        items_source, check_duplicates(items, [S.ITEM_ID], source=items_source, on_duplicate=policy.on_duplicate)
    )
    items = items.with_columns(pl.col(S.GENRES).fill_null([]), pl.col(S.TAGS).fill_null([]))
    extra = [c for c in items.columns if c not in S.ITEM_SCHEMA and c != ROW]
    items = items.select([*S.ITEM_SCHEMA, *extra])

    # Interactions
    require_rows(raw_interactions, source=interactions_source)
    require_columns(raw_interactions, S.INTERACTION_REQUIRED, source=interactions_source)
    ev = raw_interactions
    has_rating = S.RATING in ev.columns and not event_weights
    if event_weights:
        if S.EVENT_TYPE not in ev.columns:
            present = ", ".join(repr(c) for c in ev.columns if c != ROW)
            raise DataValidationError(
                f"{interactions_source}: event_weights need an '{S.EVENT_TYPE}' column; present columns: {present}. "
                f'Map yours in the dataset spec ([columns] {S.EVENT_TYPE} = "...") or remove event_weights.'
            )
        ev = ev.drop(S.RATING, strict=False)  # an implicit event's rating is its type's weight (set below)
    elif positive_threshold is not None and not has_rating:
        raise DataValidationError(
            f"{interactions_source}: positive_threshold {positive_threshold:g} is given but there is no rating "
            "column (every event is a positive); remove positive_threshold or map a rating column"
        )
    if S.RATING not in ev.columns:
        ev = ev.with_columns(pl.lit(1.0).alias(S.RATING))
    dtypes = _interaction_dtypes(ev)
    ev = step(
        interactions_source,
        coerce_types(
            ev, dtypes, source=interactions_source, on_bad_type=policy.on_bad_type, timestamp_unit=timestamp_unit
        ),
    )
    ev = step(
        interactions_source,
        check_missing(
            ev,
            [S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.RATING, *([S.EVENT_TYPE] if event_weights else [])],
            source=interactions_source,
            on_missing=policy.on_missing_value,
        ),
    )
    if event_weights:
        ev = step(
            interactions_source,
            check_event_types(
                ev, event_weights, source=interactions_source, on_unknown_event_type=policy.on_unknown_event_type
            ),
        )
        weights = pl.col(S.EVENT_TYPE).replace_strict(dict(event_weights), return_dtype=pl.Float64)
        ev = ev.with_columns(weights.alias(S.RATING))
    if has_rating and rating_range is not None:
        ev = step(
            interactions_source,
            check_rating_range(
                ev,
                source=interactions_source,
                lo=rating_range[0],
                hi=rating_range[1],
                on_out_of_range=policy.on_out_of_range,
            ),
        )
    elif has_rating:
        note = rating_range_note(ev[S.RATING], source=interactions_source)
        notes += [note] if note else []
    hi = policy.max_timestamp or (datetime.now() + timedelta(days=1))
    ev = step(
        interactions_source,
        check_timestamps(
            ev, source=interactions_source, lo=policy.min_timestamp, hi=hi, on_bad_timestamp=policy.on_bad_timestamp
        ),
    )
    ev = step(
        interactions_source,
        check_duplicates(ev, S.EVENT_KEY, source=interactions_source, on_duplicate=policy.on_duplicate),
    )
    ev = step(
        interactions_source,
        check_known_items(ev, items[S.ITEM_ID], source=interactions_source, on_unknown_item=policy.on_unknown_item),
    )
    ev = ev.select(list(dtypes))

    q = quarantine_frame(quarantined)
    qpath = str(write_quarantine(q, quarantine_dir / "quarantine.parquet")) if quarantine_dir else None
    read = raw_interactions.height + n_aside.get(interactions_source, 0)
    rpath = None
    if quarantine_dir and repaired:
        rows = [f.with_columns(pl.lit(src).alias("source")).select("source", *f.columns) for src, f in repaired]
        rpath = str(write_quarantine(pl.concat(rows), quarantine_dir / "repaired.parquet"))
    counts = count_reasons(q)
    if ev.height == 0 or ev.height < policy.min_kept_share * read:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(counts.get(interactions_source, {}).items()))
        where = f"; they are in {qpath}" if qpath else "; give --quarantine-dir to see them"
        raise DataValidationError(
            f"{interactions_source}: only {ev.height} of {read} events kept ({reasons or 'none quarantined'}){where}. "
            f"Less than {policy.min_kept_share:.0%} kept usually means a wrong column mapping, timestamp unit or "
            "file; lower --policy min_kept_share only if that many bad rows is expected"
        )
    report = ValidationReport(
        rows_read={interactions_source: read, items_source: raw_items.height + n_aside.get(items_source, 0)},
        rows_kept={interactions_source: ev.height, items_source: items.height},
        quarantined=counts,
        fixed={k: {f: n for f, n in v.items() if n} for k, v in (fixed or {}).items() if any(v.values())},
        flagged={
            items_source: {
                k: n for k, n in (("untitled_items", untitled.height), ("very_long_text_items", very_long.height)) if n
            }
        }
        if untitled.height or very_long.height
        else {},
        quarantine_path=qpath,
        repaired_path=rpath,
        notes=tuple(notes),
    )
    feedback = infer_feedback(
        ev, positive_threshold=positive_threshold, event_weights=event_weights, has_rating=has_rating
    )
    return Dataset(name=name, interactions=ev, items=items, report=report, quarantine=q, feedback=feedback)
