"""Reading raw tables (CSV/TSV/Parquet) as all-string frames with a 1-based `_row`, checking the text encoding."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from recsys.data.errors import DataValidationError, DataWarning
from recsys.data.validation import ROW, OnBadEncoding


def _decode(raw: bytes, *, path: Path, encoding: str, on_bad_encoding: OnBadEncoding) -> tuple[str, int]:
    """Decode file bytes; returns the text and the number of lines whose invalid bytes were replaced."""
    try:
        return raw.decode(encoding), 0
    except UnicodeDecodeError:
        pass
    bad_lines = []
    for i, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode(encoding)
        except UnicodeDecodeError as exc:
            bad_lines.append((i, exc.start))
    first_line, col = bad_lines[0]
    if on_bad_encoding == "error":
        raise DataValidationError(
            f"{path}: {len(bad_lines)} line(s) are not valid {encoding}, first at line {first_line} (byte {col}); "
            f"re-export the file as UTF-8, declare its encoding (e.g. encoding='latin-1'), "
            "or pass on_bad_encoding='replace' to replace the bad bytes (counted in the report)"
        )
    warnings.warn(
        f"{path}: replaced invalid {encoding} bytes on {len(bad_lines)} line(s), first at line {first_line}",
        DataWarning,
        stacklevel=3,
    )
    return raw.decode(encoding, errors="replace"), len(bad_lines)


def read_table(
    path: Path,
    *,
    separator: str = ",",
    has_header: bool = True,
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
    on_bad_encoding: OnBadEncoding = "error",
    quote_char: str | None = '"',
) -> tuple[pl.DataFrame, int]:
    """Read a CSV/TSV (all columns as String) or Parquet file and add `_row` (1-based data row, header excluded).

    Returns the frame and the number of lines whose text had to be repaired (see `on_bad_encoding`).
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{path}: file not found; check the path (or RECSYS_DATA_DIR for public datasets)")
    if path.stat().st_size == 0:
        raise DataValidationError(f"{path}: empty file (0 bytes); check the export that produced it")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            df = pl.read_parquet(path)
        except Exception as exc:  # polars raises several error types for corrupt files
            raise DataValidationError(f"{path}: not a readable Parquet file ({exc})") from exc
        return df.with_row_index(ROW, offset=1), 0
    text, fixed = _decode(path.read_bytes(), path=path, encoding=encoding, on_bad_encoding=on_bad_encoding)
    try:
        df = pl.read_csv(
            text.encode("utf-8"),
            separator=separator,
            has_header=has_header,
            new_columns=list(names) if names else None,
            infer_schema=False,
            quote_char=quote_char,
        )
    except pl.exceptions.PolarsError as exc:
        raise DataValidationError(f"{path}: cannot be parsed as a '{separator}'-separated table: {exc}") from exc
    # Windows line endings leave '\r' on the last column.
    last = df.columns[-1] if df.width else None
    if last is not None:
        df = df.with_columns(pl.col(last).str.strip_suffix("\r"))
    df = df.with_columns(
        pl.when(pl.col(c).str.len_chars() == 0).then(None).otherwise(pl.col(c)).alias(c) for c in df.columns
    )
    return df.with_row_index(ROW, offset=1), fixed
