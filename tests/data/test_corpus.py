"""The bad-input corpus (`tests/data/corpus/`): every defective file through `recsys validate`, each with its exact
outcome: exit code, the message naming file, row or line and column, the counts (rows read = kept + quarantined) and
what the quarantine holds. `events.csv` and `items.csv` are the clean pair each case spoils one side of."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from pipelines.cli import app

CORPUS = Path(__file__).parent / "corpus"
runner = CliRunner()


@dataclass(frozen=True)
class Case:
    events: str = "events.csv"
    items: str = "items.csv"
    policy: tuple[str, ...] = ()
    exit_code: int = 0
    says: tuple[str, ...] = ()  # in the one-line error (exit 2) or the warnings (exit 0), whitespace-normalised
    kept: int | None = None  # events kept
    quarantined: dict[str, int] = field(default_factory=dict)  # reason -> count, events file
    fixed: dict[str, int] = field(default_factory=dict)  # repair -> count, on the spoiled file
    flagged: dict[str, int] = field(default_factory=dict)  # fact -> count, items file


CASES: dict[str, Case] = {
    "missing column": Case(
        "missing_column.csv", exit_code=2, says=("missing_column.csv", "missing required column(s) 'timestamp'")
    ),
    "misnamed column": Case(
        "misnamed_column.csv", exit_code=2, says=("did you mean 'time'? map it with --map timestamp=time",)
    ),
    "wrong type": Case(
        "wrong_type.csv", exit_code=2, says=("wrong_type.csv", "not Float64 (e.g. 'five')", "'rating'", "row 2")
    ),
    "wrong type, dropped": Case("wrong_type.csv", policy=("on_bad_type=drop",), kept=3, quarantined={"bad_type": 1}),
    "null": Case("null_user.csv", exit_code=2, says=("null_user.csv", "missing value", "'user_id'", "row 2")),
    "NaN": Case("nan_rating.csv", exit_code=2, says=("missing value (null/NaN)", "'rating'", "row 2")),
    "NaN, dropped": Case("nan_rating.csv", policy=("on_missing_value=drop",), kept=3, quarantined={"missing_value": 1}),
    "duplicate": Case("duplicate.csv", exit_code=2, says=("duplicate.csv", "duplicate (user_id, item_id, timestamp)")),
    "duplicate, dropped": Case("duplicate.csv", policy=("on_duplicate=drop",), kept=3, quarantined={"duplicate": 1}),
    "unknown id": Case("unknown_item.csv", exit_code=2, says=("absent from the catalog (e.g. 'i9')", "row 2")),
    "unknown id, dropped": Case(
        "unknown_item.csv", policy=("on_unknown_item=drop",), kept=3, quarantined={"unknown_item": 1}
    ),
    "absurd timestamps": Case(
        "absurd_timestamps.csv", exit_code=2, says=("2 row(s) with an absurd timestamp", "'timestamp'", "row 2")
    ),
    "absurd timestamps, dropped": Case(
        "absurd_timestamps.csv", policy=("on_bad_timestamp=drop",), kept=3, quarantined={"bad_timestamp": 2}
    ),
    "ragged rows": Case(
        "ragged.csv", exit_code=2, says=("ragged.csv", "2 row(s)", "header's 4", "first at line 3", "5 field(s)")
    ),
    "ragged rows, dropped": Case("ragged.csv", policy=("on_ragged_row=drop",), kept=3, quarantined={"ragged_row": 2}),
    "BOM and CRLF": Case("bom_crlf.csv", kept=3),
    "blank lines": Case("blank_lines.csv", kept=3, fixed={"blank_lines_skipped": 2}, says=("skipped 2 blank line",)),
    "quoted newlines": Case(items="items_quoted_newline.csv", kept=6),
    "empty title": Case(
        items="items_empty_title.csv", kept=6, flagged={"untitled_items": 1}, says=("1 item(s) without a title",)
    ),
    "non-UTF-8": Case(
        items="items_latin1.csv", exit_code=2, says=("items_latin1.csv", "not valid utf-8", "first at line 3")
    ),
    "non-UTF-8, replaced": Case(
        items="items_latin1.csv", policy=("on_bad_encoding=replace",), kept=6, fixed={"replaced_invalid_text": 1}
    ),
    "empty file": Case("empty.csv", exit_code=2, says=("empty.csv: empty file (0 bytes)",)),
    "header only": Case("header_only.csv", exit_code=2, says=("header_only.csv: no data rows",)),
    "every event quarantined": Case(
        "all_unknown.csv",
        policy=("on_unknown_item=drop",),
        exit_code=2,
        says=("only 0 of 3 events kept (3 unknown_item)", "all_unknown.csv"),
    ),
}


def _validate(case: Case, folder: Path, events: Path, items: Path):
    args = ["validate", "--interactions", str(events), "--items", str(items), "--quarantine-dir", str(folder)]
    for p in case.policy:
        args += ["--policy", p]
    return runner.invoke(app, args)


@pytest.mark.parametrize("name", list(CASES))
def test_each_defective_file_has_its_exact_outcome(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    events, items = CORPUS / case.events, CORPUS / case.items
    result = _validate(case, tmp_path / "q", events, items)
    said = " ".join(result.output.split())
    assert result.exit_code == case.exit_code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for phrase in case.says:
        assert phrase in said, (phrase, said)
    if case.exit_code:
        assert said.count("error:") == 1  # one line, whatever the terminal's width
        return
    report = json.loads(result.stdout)["validation"]
    ev, it = str(events), str(items)
    assert report["rows_kept"][ev] == case.kept
    assert report["quarantined"].get(ev, {}) == case.quarantined
    # nothing lost: every row read is kept or quarantined, on both sides
    for source in (ev, it):
        assert report["rows_read"][source] == report["rows_kept"][source] + sum(
            report["quarantined"].get(source, {}).values()
        )
    spoiled = ev if case.events != "events.csv" else it
    assert report["fixed"].get(spoiled, {}) == case.fixed
    assert report["flagged"].get(it, {}) == case.flagged
    quarantine = pl.read_parquet(tmp_path / "q" / "quarantine.parquet")
    assert dict(quarantine.group_by("reason").len().iter_rows()) == case.quarantined
    assert set(quarantine["source"].to_list()) <= {ev}


def test_ragged_rows_are_quarantined_with_their_raw_lines(tmp_path: Path) -> None:
    case = CASES["ragged rows, dropped"]
    result = _validate(case, tmp_path / "q", CORPUS / case.events, CORPUS / case.items)
    assert result.exit_code == 0, result.output
    q = pl.read_parquet(tmp_path / "q" / "quarantine.parquet").sort("row")
    assert q["row"].to_list() == [2, 4] and q["column"].to_list() == ["5 of 4 fields", "2 of 4 fields"]
    records = [json.loads(r) for r in q["record"]]
    assert records == [{"line": 3, "raw": "u1,i2,3,1600000100,extra"}, {"line": 5, "raw": "u2,i3"}]


def test_replaced_text_keeps_the_raw_bytes_aside(tmp_path: Path) -> None:
    case = CASES["non-UTF-8, replaced"]
    result = _validate(case, tmp_path / "q", CORPUS / case.events, CORPUS / case.items)
    assert result.exit_code == 0, result.output
    repaired = pl.read_parquet(tmp_path / "q" / "repaired.parquet")
    assert repaired.select("line", "raw").rows() == [(3, b"i2,Caf\xe9,Drama")]
    assert repaired["text"][0] == "i2,Caf\ufffd,Drama"
    assert json.loads(result.stdout)["validation"]["repaired_path"] == str(tmp_path / "q" / "repaired.parquet")


def test_an_empty_title_loses_no_events_and_quoted_text_survives() -> None:
    from recsys.data import load_files

    with pytest.warns(UserWarning, match="without a title"):
        ds = load_files(CORPUS / "events.csv", CORPUS / "items_empty_title.csv")
    assert ds.interactions.height == 6 and ds.items.height == 4
    assert ds.items.filter(pl.col("item_id") == "i2")["title"].to_list() == [None]
    quoted = load_files(CORPUS / "events.csv", CORPUS / "items_quoted_newline.csv").items
    assert quoted["title"].to_list()[:2] == ["Alpha,\nthe first", 'Beta "quoted"']


def test_huge_text_is_kept_and_reported(tmp_path: Path) -> None:
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ni1,Alpha\ni2," + "word " * 400_000 + "\ni3,Gamma\ni4,Delta\n")
    case = Case(items=str(items))
    result = _validate(case, tmp_path / "q", CORPUS / "events.csv", items)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["validation"]
    assert report["rows_kept"][str(items)] == 4 and report["flagged"][str(items)] == {"very_long_text_items": 1}
    assert "more than 100,000 characters of text, first at row 2" in " ".join(result.output.split())
