from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest

from recsys.evaluation import make_split, split_leave_last_out, split_ms_stratified, split_temporal
from tests.conftest import make_events


def test_ms_stratified_rounds_half_to_even_per_item() -> None:
    rows = [(f"u{u}", "one", u, 1.0) for u in range(1)]  # 1 event: round(0.75) = 1 -> train
    rows += [(f"u{u}", "two", u, 1.0) for u in range(2)]  # 2: round(1.5) = 2 -> all train
    rows += [(f"u{u}", "six", u, 1.0) for u in range(6)]  # 6: round(4.5) = 4 (half to even)
    rows += [(f"u{u}", "ten", u, 1.0) for u in range(10)]  # 10: round(7.5) = 8
    split = split_ms_stratified(make_events(rows), ratio=0.75, seed=42)
    counts = dict(split.train.group_by("item_id").len().iter_rows())
    assert counts == {"one": 1, "two": 2, "six": 4, "ten": 8}
    assert split.train.height + split.test.height == len(rows)


def test_ms_stratified_is_deterministic_and_seed_sensitive(synthetic) -> None:
    a = split_ms_stratified(synthetic.interactions, seed=42)
    b = split_ms_stratified(synthetic.interactions, seed=42)
    c = split_ms_stratified(synthetic.interactions, seed=7)
    assert a.test.equals(b.test) and not a.test.equals(c.test)


def test_temporal_has_no_leakage_and_reports_cold_items(synthetic) -> None:
    split = split_temporal(synthetic.interactions)
    assert split.train["timestamp"].max() < split.test["timestamp"].min()
    assert set(split.test["user_id"].unique()) <= set(split.train["user_id"].unique())
    assert split.stats["n_test_cold_items"] > 0  # synthetic releases items during the year
    assert split.candidate_items == "catalog"


def test_leave_last_out_takes_each_users_latest_event() -> None:
    ev = make_events([("a", "x", 1, 1.0), ("a", "y", 3, 1.0), ("a", "z", 2, 1.0), ("b", "x", 1, 1.0)])
    split = split_leave_last_out(ev)
    assert split.test.select("user_id", "item_id").rows() == [("a", "y")]
    assert split.train.height == 3  # b's single event stays in train


def test_make_split_dispatches() -> None:
    ev = make_events([("a", "x", 1, 1.0), ("a", "y", 2, 1.0), ("b", "x", 3, 1.0), ("b", "z", 4, 1.0)])
    assert make_split(ev, "leave-last-out").protocol == "leave-last-out"
    assert isinstance(make_split(ev, "temporal").train, pl.DataFrame)


def test_temporal_cutoff_outside_the_data_is_a_clear_error(synthetic) -> None:
    with pytest.raises(ValueError, match=r"cutoff 2030-01-01 00:00:00 leaves no test events; the data spans 2024"):
        split_temporal(synthetic.interactions, cutoff=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="leaves no training events"):
        split_temporal(synthetic.interactions, cutoff=datetime(2000, 1, 1))
