"""Ratings outside the declared scale: an error naming file, row and column by default, a counted quarantine under
`on_out_of_range = drop`; without a declared scale the observed range is reported, with a warning for outliers."""

from __future__ import annotations

import polars as pl
import pytest

from recsys.config import public_data_dir
from recsys.data import DataValidationError, load_dataset
from recsys.data.validation import ValidationPolicy


def _spec(tmp_path, ratings: list[float], extra: str = "") -> str:
    n = len(ratings)
    pl.DataFrame(
        {
            "user_id": [f"u{i % 7}" for i in range(n)],
            "item_id": [f"i{i % 11}" for i in range(n)],
            "timestamp": [1_600_000_000 + i for i in range(n)],
            "rating": ratings,
        }
    ).write_csv(tmp_path / "events.csv")
    pl.DataFrame({"item_id": [f"i{i}" for i in range(11)], "title": [f"Item {i}" for i in range(11)]}).write_csv(
        tmp_path / "items.csv"
    )
    (tmp_path / "shop.toml").write_text(f'interactions = "events.csv"\nitems = "items.csv"\n{extra}')
    return str(tmp_path / "shop.toml")


def test_out_of_range_rating_is_an_error_naming_file_row_and_column(tmp_path):
    spec = _spec(tmp_path, [4.0] * 30 + [77.0] + [3.0] * 9, "rating_range = [1, 5]\n")
    with pytest.raises(DataValidationError) as err:
        load_dataset(spec)
    msg = str(err.value)
    assert "events.csv" in msg and "'rating'" in msg and "first at row 31" in msg and "77" in msg
    assert "on_out_of_range=drop" in msg


def test_drop_quarantines_and_counts_them(tmp_path):
    spec = _spec(tmp_path, [4.0] * 30 + [77.0, 0.0] + [3.0] * 8, "rating_range = [1, 5]\n")
    ds = load_dataset(spec, policy=ValidationPolicy(on_out_of_range="drop"))
    assert ds.interactions.height == 38 and ds.interactions["rating"].max() <= 5
    source = str(tmp_path / "events.csv")
    assert ds.report.quarantined[source] == {"rating_out_of_range": 2}
    assert ds.report.rows_read[source] == ds.report.rows_kept[source] + 2
    assert sorted(ds.quarantine.filter(pl.col("reason") == "rating_out_of_range")["row"].to_list()) == [31, 32]


def test_without_a_declared_range_the_observed_one_is_reported_with_a_warning(tmp_path):
    ds = load_dataset(_spec(tmp_path, [4.0] * 3000 + [77.0]))
    notes = " ".join(ds.report.notes)
    assert "ratings 4..77 observed" in notes and "WARNING: 1 rating(s) above" in notes
    assert ds.interactions.height == 3001  # reported, not dropped
    plain = load_dataset(_spec(tmp_path, [1.0, 2.0, 3.0, 4.0, 5.0] * 10))
    assert any("ratings 1..5 observed" in n and "WARNING" not in n for n in plain.report.notes)


@pytest.mark.realdata
def test_movielens_declares_its_scale(real_data_dir):
    ds = load_dataset("ml-100k", data_dir=public_data_dir())
    assert not any("observed" in n for n in ds.report.notes)  # checked against 1-5, nothing to report
