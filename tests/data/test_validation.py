from __future__ import annotations

import warnings
from pathlib import Path

import polars as pl
import pytest

from recsys.data import DataValidationError, DataWarning, ValidationPolicy, load_dataset, load_files

ITEMS = "item_id,title,genres\nA,Alpha,Drama|Comedy\nB,Beta,Horror\nC,Gamma,\n"
EVENTS = "user_id,item_id,timestamp,rating\nu1,A,1700000000,4\nu1,B,1700000100,5\nu2,A,1700000200,3\n"


def write(tmp_path: Path, events: str | bytes = EVENTS, items: str | bytes = ITEMS) -> tuple[Path, Path]:
    e, i = tmp_path / "events.csv", tmp_path / "items.csv"
    for path, text in ((e, events), (i, items)):
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return e, i


def drop_all() -> ValidationPolicy:
    return ValidationPolicy(
        on_missing_value="drop",
        on_bad_type="drop",
        on_duplicate="drop",
        on_unknown_item="drop",
        on_bad_timestamp="drop",
        min_kept_share=0.0,  # these tests quarantine most of a few rows on purpose
    )


def test_clean_files_load_with_canonical_types(tmp_path: Path) -> None:
    ds = load_files(*write(tmp_path))
    assert ds.interactions.height == 3 and ds.items.height == 3
    assert ds.interactions.schema["timestamp"] == pl.Datetime("us")
    assert ds.items.filter(pl.col("item_id") == "A")["genres"].to_list() == [["Drama", "Comedy"]]
    assert ds.items.filter(pl.col("item_id") == "C")["genres"].to_list() == [[]]
    assert ds.report.n_quarantined == 0


def test_misnamed_column_error_names_file_and_suggests_mapping(tmp_path: Path) -> None:
    e, i = write(tmp_path, events=EVENTS.replace("user_id", "userid"))
    msg = r"events\.csv: missing required column\(s\) 'user_id' \(did you mean 'userid'"
    with pytest.raises(DataValidationError, match=msg):
        load_files(e, i)
    ds = load_files(e, i, mapping={"user_id": "userid"})
    assert ds.interactions["user_id"].to_list() == ["u1", "u1", "u2"]


def test_a_typo_in_the_mapping_points_at_the_files_column_not_a_canonical_one(tmp_path: Path) -> None:
    e, i = write(tmp_path, events=EVENTS.replace("user_id", "customer"))
    # item_id is present and close to user_id, but it is not the missing column: the hint is the file's 'customer'
    with pytest.raises(
        DataValidationError, match=r"--map user_id=custmer: no column 'custmer'.*--map user_id=customer"
    ):
        load_files(e, i, mapping={"user_id": "custmer"})
    with pytest.raises(DataValidationError, match=r"missing required column\(s\) 'user_id' \(did you mean 'customer'"):
        load_files(e, i)


def test_iso_timestamps_without_the_unit_hint_the_unit_flag(tmp_path: Path) -> None:
    e, i = write(
        tmp_path,
        events=EVENTS.replace("1700000000", "2023-11-14T22:13:20")
        .replace("1700000100", "2023-11-14")
        .replace("1700000200", "2023-11-15 08:00:00"),
    )
    with pytest.raises(DataValidationError, match=r"pass --timestamp-unit iso") as info:
        load_files(e, i)
    assert "on_bad_type" not in str(info.value)  # dropping every row is not the fix
    assert load_files(e, i, timestamp_unit="iso").interactions.height == 3


def test_hints_use_the_command_line_flag(tmp_path: Path) -> None:
    e, i = write(tmp_path, events=EVENTS + "u1,A,1700000000,4\n")
    with pytest.raises(DataValidationError, match=r"--policy on_duplicate=drop"):
        load_files(e, i)


def test_a_load_that_keeps_too_few_events_is_an_error_that_says_so(tmp_path: Path) -> None:
    e, i = write(tmp_path, events=EVENTS.replace("u1,A", "u1,Z").replace("u2,A", "u2,Z"))  # 2 of 3 unknown items
    policy = ValidationPolicy(on_unknown_item="drop")
    with pytest.raises(DataValidationError, match=r"events\.csv: only 1 of 3 events kept \(2 unknown_item\)"):
        load_files(e, i, policy=policy, quarantine_dir=tmp_path / "q")
    assert pl.read_parquet(tmp_path / "q" / "quarantine.parquet").height == 2  # still written, for inspection
    assert load_files(e, i, policy=policy.model_copy(update={"min_kept_share": 0.3})).interactions.height == 1
    e, i = write(tmp_path, events=EVENTS.replace(",A,", ",Z,").replace(",B,", ",Z,"))  # every event unknown
    with pytest.raises(DataValidationError, match=r"only 0 of 3 events kept"):
        load_files(e, i, policy=policy.model_copy(update={"min_kept_share": 0.0}))


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    e, i = write(tmp_path, events="user_id,item_id,timestamp,rating\n")
    with pytest.raises(DataValidationError, match=r"events\.csv: no data rows"):
        load_files(e, i)
    e.write_bytes(b"")
    with pytest.raises(DataValidationError, match=r"events\.csv: empty file"):
        load_files(e, i)


def test_wrong_type_names_row_and_column_or_is_quarantined(tmp_path: Path) -> None:
    e, i = write(tmp_path, events=EVENTS + "u3,B,1700000300,five\n")
    msg = r"events\.csv: 1 row\(s\) with a value that is not Float64 .*'rating', first at row 4"
    with pytest.raises(DataValidationError, match=msg):
        load_files(e, i)
    ds = load_files(e, i, policy=drop_all(), quarantine_dir=tmp_path / "q")
    assert ds.report.quarantined[str(e)] == {"bad_type": 1}
    q = pl.read_parquet(tmp_path / "q" / "quarantine.parquet")
    assert q.select("source", "row", "reason", "column").row(0) == (str(e), 4, "bad_type", "rating")
    assert "five" in q["record"][0]


def test_duplicates_error_then_quarantine(tmp_path: Path) -> None:
    e, i = write(tmp_path, events=EVENTS + "u1,A,1700000000,4\nu1,A,1700000000,2\n")
    with pytest.raises(DataValidationError, match=r"2 row\(s\) with a duplicate .* first at row 4"):
        load_files(e, i)
    ds = load_files(e, i, policy=ValidationPolicy(on_duplicate="drop"))
    assert ds.report.quarantined[str(e)] == {"duplicate": 2}
    assert ds.interactions.height == 3


def test_unknown_item_error_then_quarantine(tmp_path: Path) -> None:
    e, i = write(tmp_path, events=EVENTS + "u2,Z,1700000300,1\n")
    with pytest.raises(DataValidationError, match=r"absent from the catalog \(e\.g\. 'Z'\).*first at row 4"):
        load_files(e, i)
    assert load_files(e, i, policy=drop_all()).report.quarantined[str(e)] == {"unknown_item": 1}


def test_missing_values_error_then_quarantine(tmp_path: Path) -> None:
    e, i = write(tmp_path, events=EVENTS + ",A,1700000300,1\nu4,B,1700000400,NaN\n")
    with pytest.raises(DataValidationError, match=r"missing value \(null/NaN\) in column 'user_id', first at row 4"):
        load_files(e, i)
    ds = load_files(e, i, policy=drop_all())
    assert ds.report.quarantined[str(e)] == {"missing_value": 2}


def test_absurd_timestamps_error_then_quarantine(tmp_path: Path) -> None:
    # milliseconds read as seconds land tens of thousands of years ahead; epoch 0 is before 1990
    e, i = write(tmp_path, events=EVENTS + "u3,A,1700000000000,4\nu3,B,0,4\n")
    with pytest.raises(DataValidationError, match=r"absurd timestamp"):
        load_files(e, i)
    ds = load_files(e, i, policy=drop_all())
    assert sum(ds.report.quarantined[str(e)].values()) == 2


def test_non_utf8_text_error_or_replaced_and_counted(tmp_path: Path) -> None:
    items = ITEMS.encode() + "D,Mis\u00e9rables,Drama\n".encode("latin-1")
    e, i = write(tmp_path, items=items)
    with pytest.raises(DataValidationError, match=r"items\.csv: 1 line\(s\) are not valid utf-8, first at line 5"):
        load_files(e, i)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_files(e, i, policy=ValidationPolicy(on_bad_encoding="replace"))
    assert any(issubclass(w.category, DataWarning) for w in caught)
    assert ds.report.fixed[str(i)] == {"replaced_invalid_text": 1}
    assert ds.items.height == 4
    assert load_files(e, i, encoding="latin-1").items.filter(pl.col("item_id") == "D")["title"][0] == "Misérables"


def test_nothing_is_lost_rows_read_equal_kept_plus_quarantined(tmp_path: Path) -> None:
    bad = EVENTS + "u1,A,1700000000,4\nu2,Z,1700000300,1\n,A,1700000300,1\nu3,B,17000,x\n"
    e, i = write(tmp_path, events=bad)
    ds = load_files(e, i, policy=drop_all(), quarantine_dir=tmp_path)
    r = ds.report
    assert r.rows_read[str(e)] == r.rows_kept[str(e)] + sum(r.quarantined[str(e)].values()) == 7
    assert pl.read_parquet(r.quarantine_path).height == ds.quarantine.height == 4


def test_dataset_spec_toml_with_mapping_and_parquet(tmp_path: Path) -> None:
    pl.DataFrame(
        {"cust": ["a", "b"], "sku": ["A", "B"], "when": ["2024-01-01T10:00:00", "2024-01-02"], "stars": [5.0, 3.0]}
    ).write_parquet(tmp_path / "log.parquet")
    (tmp_path / "items.csv").write_text(ITEMS)
    (tmp_path / "shop.toml").write_text(
        'interactions = "log.parquet"\nitems = "items.csv"\ntimestamp_unit = "iso"\n'
        '[columns]\nuser_id = "cust"\nitem_id = "sku"\ntimestamp = "when"\nrating = "stars"\n'
    )
    ds = load_dataset(str(tmp_path / "shop.toml"))
    assert ds.name == "shop" and ds.interactions.height == 2
    assert str(ds.interactions["timestamp"][1]) == "2024-01-02 00:00:00"


def test_bad_spec_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('interactions = "a.csv"\nitems = "b.csv"\ntimestamp_unit = "minutes"\n')
    with pytest.raises(DataValidationError, match=r"bad\.toml: invalid dataset spec: timestamp_unit"):
        load_dataset(str(tmp_path / "bad.toml"))


def test_the_flows_apply_a_specs_own_policy_unless_settings_override_it(tmp_path: Path) -> None:
    from recsys.config import load_settings
    from recsys.nightly.tasks import load_and_validate

    def load_data(settings):
        return load_and_validate(settings.data, tmp_path / "night" / "data").load()

    e, i = write(tmp_path, events=EVENTS + "u1,A,1700000000,4\n")  # one duplicate event
    spec = tmp_path / "shop.toml"
    spec.write_text(f'interactions = "{e.name}"\nitems = "{i.name}"\n[policy]\non_duplicate = "drop"\n')
    ds = load_data(load_settings(data={"dataset": str(spec)}))  # the nightly's own loading step
    assert ds.interactions.height == 3 and ds.report.quarantined[str(e)] == {"duplicate": 1}
    strict = load_settings(data={"dataset": str(spec), "policy": {"on_duplicate": "error"}})
    with pytest.raises(DataValidationError, match="duplicate"):
        load_data(strict)
