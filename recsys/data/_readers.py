"""Reading raw tables (CSV/TSV/Parquet) as all-string frames with a 1-based `_row`, checking the text encoding and
the number of fields of every row."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from recsys.data.errors import DataValidationError, DataWarning
from recsys.data.validation import ROW, OnBadEncoding, OnProblem

RAGGED = "ragged_row"
_REPAIRED_SCHEMA = {"line": pl.Int64, "raw": pl.Binary, "text": pl.String}


@dataclass(frozen=True)
class RawTable:
    """A file read as strings. `frame`: its rows with `_row` (1-based data row, header excluded; blank lines count);
    `repaired`: lines whose invalid bytes were replaced (line, raw bytes, repaired text); `aside`: rows set aside by
    the reader (ragged rows under `on_ragged_row="drop"`), in the quarantine's form (`_row`, reason, column, line,
    raw); `blank_lines`: blank lines skipped."""

    frame: pl.DataFrame
    repaired: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_REPAIRED_SCHEMA))
    aside: pl.DataFrame | None = None
    blank_lines: int = 0

    @property
    def n_repaired(self) -> int:
        return self.repaired.height


def _decode(raw: bytes, *, path: Path, encoding: str, on_bad_encoding: OnBadEncoding) -> tuple[str, pl.DataFrame]:
    """Decode file bytes; returns the text and the lines whose invalid bytes were replaced (line, raw, text)."""
    try:
        return raw.decode(encoding), pl.DataFrame(schema=_REPAIRED_SCHEMA)
    except UnicodeDecodeError:
        pass
    bad: list[tuple[int, bytes, int]] = []
    for i, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode(encoding)
        except UnicodeDecodeError as exc:
            bad.append((i, line, exc.start))
    first_line, _, col = bad[0]
    if on_bad_encoding == "error":
        raise DataValidationError(
            f"{path}: {len(bad)} line(s) are not valid {encoding}, first at line {first_line} (byte {col}); "
            're-export the file as UTF-8, declare its encoding in a dataset spec (encoding = "latin-1"), or '
            "pass --policy on_bad_encoding=replace to replace the bad bytes (counted in the report; with "
            "--quarantine-dir the raw lines are kept in repaired.parquet)"
        )
    warnings.warn(
        f"{path}: replaced invalid {encoding} bytes on {len(bad)} line(s), first at line {first_line}",
        DataWarning,
        stacklevel=3,
    )
    repaired = pl.DataFrame(
        {
            "line": [b[0] for b in bad],
            "raw": [b[1] for b in bad],
            "text": [b[1].decode(encoding, errors="replace") for b in bad],
        },
        schema=_REPAIRED_SCHEMA,
    )
    return raw.decode(encoding, errors="replace"), repaired


@dataclass(frozen=True)
class _Record:
    index: int  # 1-based data record (header excluded; blank lines count, as polars counts them)
    line: int  # 1-based first physical line
    fields: int
    raw: str


def _records(text: str, *, separator: str, quote_char: str | None, has_header: bool) -> tuple[int, list[_Record]]:
    """Every record of `text` with its first line and field count (the csv module, which reports both), and the
    header's width (0 without a header)."""
    lines = [line + "\n" for line in text.split("\n")]
    if text.endswith("\n"):
        lines.pop()  # the final newline ends the last record; it does not start an empty one
    if quote_char:
        reader = csv.reader(iter(lines), delimiter=separator, quotechar=quote_char, strict=False)
    else:
        reader = csv.reader(iter(lines), delimiter=separator, quoting=csv.QUOTE_NONE, strict=False)
    width, start = 0, 0
    out: list[_Record] = []
    for n, row in enumerate(reader):
        end = reader.line_num
        if has_header and n == 0:
            width = len(row)
        else:
            out.append(_Record(len(out) + 1, start + 1, len(row), "".join(lines[start:end])))
        start = end
    return width, out


def _check_fields(
    text: str,
    frame: pl.DataFrame | None,
    error: pl.exceptions.PolarsError | None,
    *,
    path: Path,
    separator: str,
    quote_char: str | None,
    has_header: bool,
    names: Sequence[str] | None,
    on_ragged_row: OnProblem,
    parse: Callable[[bytes], pl.DataFrame],
) -> tuple[pl.DataFrame, pl.DataFrame | None, int]:
    """Ragged rows (more or fewer fields than the header) and blank lines. polars pads short rows with nulls and
    refuses long ones without saying where; the csv module finds both by line. Only run when polars failed or a row's
    last field is empty (a short row's sign), so a clean file is read once."""
    header, records = _records(text, separator=separator, quote_char=quote_char, has_header=has_header)
    width = len(names) if names else header
    blank = [r for r in records if r.fields == 0 or (r.fields == 1 and not r.raw.strip())]
    blank_ids = {r.index for r in blank}
    ragged = [r for r in records if r.index not in blank_ids and r.fields != width]
    if not ragged and not blank:
        if error is not None:
            raise DataValidationError(f"{path}: cannot be parsed as a '{separator}'-separated table: {_first(error)}")
        assert frame is not None
        return frame, None, 0
    if ragged and on_ragged_row == "error":
        r = ragged[0]
        sep = "TAB" if separator == "\t" else repr(separator)
        hint = (
            f"a {sep} inside an unquoted field?" if r.fields > width else "a truncated row or an unquoted line break?"
        )
        raise DataValidationError(
            f"{path}: {len(ragged)} row(s) whose number of fields differs from the header's {width}, first at line "
            f"{r.line} (row {r.index}: {r.fields} field(s); {hint}); fix the export, or pass --policy "
            "on_ragged_row=drop to quarantine them with their raw lines"
        )
    bad = {r.index for r in ragged} | blank_ids
    kept = [r for r in records if r.index not in bad]
    head = "" if not has_header else text.split("\n", 1)[0] + "\n"
    body = head + "".join(r.raw if r.raw.endswith("\n") else r.raw + "\n" for r in kept)
    clean = parse(body.encode("utf-8")) if kept else None
    if clean is None:
        cols = list(names) if names else next(csv.reader([text.split("\n", 1)[0]], delimiter=separator))
        clean = pl.DataFrame(schema=dict.fromkeys(cols, pl.String))
    if clean.height != len(kept):
        raise DataValidationError(
            f"{path}: cannot be parsed as a '{separator}'-separated table: {clean.height} rows parsed where "
            f"{len(kept)} were expected after setting {len(ragged)} ragged row(s) aside; check its quoting"
        )
    clean = clean.with_columns(pl.Series(ROW, [r.index for r in kept], dtype=pl.UInt32))
    aside = pl.DataFrame(
        {
            ROW: [r.index for r in ragged],
            "reason": [RAGGED] * len(ragged),
            "column": [f"{r.fields} of {width} fields" for r in ragged],
            "line": [r.line for r in ragged],
            "raw": [r.raw.rstrip("\r\n") for r in ragged],
        },
        schema={ROW: pl.UInt32, "reason": pl.String, "column": pl.String, "line": pl.Int64, "raw": pl.String},
    )
    if blank:
        warnings.warn(f"{path}: skipped {len(blank)} blank line(s)", DataWarning, stacklevel=4)
    return clean, aside if ragged else None, len(blank)


def _first(error: Exception) -> str:
    """polars' message without its advice (options of `read_csv` the command line does not expose)."""
    return " ".join(line for line in str(error).splitlines() if line.strip() and not line.startswith("Consider"))


def read_table(
    path: Path,
    *,
    separator: str = ",",
    has_header: bool = True,
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
    on_bad_encoding: OnBadEncoding = "error",
    on_ragged_row: OnProblem = "error",
    quote_char: str | None = '"',
) -> RawTable:
    """Read a CSV/TSV (all columns as String) or Parquet file and add `_row` (1-based data row, header excluded).

    A row with more or fewer fields than the header is an error naming its line, or (`on_ragged_row="drop"`) set
    aside with its raw text (`RawTable.aside`); blank lines are skipped and counted; invalid bytes follow
    `on_bad_encoding` (replaced lines are kept in `RawTable.repaired`).
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
        return RawTable(df.with_row_index(ROW, offset=1))
    text, repaired = _decode(path.read_bytes(), path=path, encoding=encoding, on_bad_encoding=on_bad_encoding)

    def parse(data: bytes) -> pl.DataFrame:
        return pl.read_csv(
            data,
            separator=separator,
            has_header=has_header,
            new_columns=list(names) if names else None,
            infer_schema=False,
            quote_char=quote_char,
        ).with_row_index(ROW, offset=1)

    frame: pl.DataFrame | None = None
    error: pl.exceptions.PolarsError | None = None
    try:
        frame = parse(text.encode("utf-8"))
    except pl.exceptions.PolarsError as exc:
        error = exc
    aside, blank = None, 0
    if error is not None or (frame is not None and frame.width > 1 and frame[frame.columns[-1]].null_count()):
        frame, aside, blank = _check_fields(
            text,
            frame,
            error,
            path=path,
            separator=separator,
            quote_char=quote_char,
            has_header=has_header,
            names=names,
            on_ragged_row=on_ragged_row,
            parse=parse,
        )
    assert frame is not None
    # Windows line endings leave '\r' on the last column.
    last = frame.columns[-1]
    if last != ROW:
        frame = frame.with_columns(pl.col(last).str.strip_suffix("\r"))
    data = [c for c in frame.columns if c != ROW]
    frame = frame.with_columns(
        pl.when(pl.col(c).str.len_chars() == 0).then(None).otherwise(pl.col(c)).alias(c) for c in data
    ).select(ROW, *data)
    return RawTable(frame, repaired, aside, blank)


def read_frame(path: Path, **options: object) -> pl.DataFrame:
    """`read_table(path, **options).frame`: for public datasets, whose ragged rows are always an error."""
    return read_table(path, **options).frame  # type: ignore[arg-type]
