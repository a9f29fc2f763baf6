"""Datasets, splits and reports written to folders and read back (how the night's steps hand them to each other):
the same content, bit for bit, and a clear refusal of what was not written by us or was changed since."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recsys.data import generate_synthetic
from recsys.data.stored import read_dataset, read_ref, write_dataset
from recsys.evaluation.runner import evaluate
from recsys.evaluation.splits import make_split
from recsys.evaluation.stored import read_report, read_split, split_facts, write_report, write_split


@pytest.fixture(scope="module")
def synthetic():
    return generate_synthetic(n_users=60, n_items=80, mean_events=15, seed=5)


def test_a_dataset_reads_back_with_the_same_content_and_facts(synthetic, tmp_path: Path) -> None:
    holdout = (
        synthetic.interactions.group_by("user_id")
        .agg(pl.all().last())
        .select("user_id", "item_id", "timestamp", pl.lit("test").alias("role"))
    )
    shipped = replace(synthetic, holdout=holdout, name="shop")
    ref = write_dataset(shipped, tmp_path / "data")
    assert ref.fingerprint == shipped.fingerprint and ref.ships_split and ref.feedback == shipped.feedback
    assert ref.summary["n_interactions"] == shipped.interactions.height
    back = ref.load()
    for name in ("interactions", "items", "quarantine", "holdout"):
        assert_frame_equal(getattr(back, name), getattr(shipped, name))
    assert back.report == shipped.report and back.name == "shop" and back.feedback == shipped.feedback
    assert back.fingerprint == shipped.fingerprint and back.summary() == shipped.summary()
    assert read_ref(tmp_path / "data") == ref

    plain = write_dataset(synthetic, tmp_path / "plain")
    assert not plain.ships_split and plain.load().holdout is None


def test_a_changed_or_foreign_dataset_folder_is_refused(synthetic, tmp_path: Path) -> None:
    folder = write_dataset(synthetic, tmp_path / "data").folder
    synthetic.interactions.head(10).write_parquet(folder / "interactions.parquet")
    with pytest.raises(ValueError, match="does not match its fingerprint"):
        read_dataset(folder)
    with pytest.raises(ValueError, match="not a written dataset"):
        read_dataset(tmp_path)


@pytest.mark.parametrize("protocol", ["temporal", "cold-items", "leave-last-out"])
def test_a_split_reads_back_equal(synthetic, tmp_path: Path, protocol: str) -> None:
    split = make_split(synthetic.interactions, protocol, seed=3)
    back = read_split(write_split(split, tmp_path / "split"))
    assert_frame_equal(back.train, split.train)
    assert_frame_equal(back.test, split.test)
    assert (back.protocol, back.candidate_items, back.held_out_items) == (
        split.protocol,
        split.candidate_items,
        split.held_out_items,
    )
    assert back.params == split.params and back.stats == split.stats
    assert split_facts(tmp_path / "split") == {"protocol": protocol, "params": split.params, "stats": split.stats}


def test_a_report_reads_back_with_the_same_metrics_per_user_rows_and_comparisons(synthetic, tmp_path: Path) -> None:
    report = evaluate(synthetic, protocol="temporal", models=("toppop", "ease"), ease_grid=(50.0,), extra_ks=(20,))
    back = read_report(write_report(report, tmp_path / "report"))
    assert back.to_dict() == report.to_dict()
    for m, b in zip(report.models, back.models, strict=True):
        assert b.metrics == m.metrics  # exact: floats written in their round-trip form
        assert_frame_equal(b.per_user, m.per_user)
        assert_frame_equal(b.recommendations, m.recommendations)
    assert back.compare("toppop", "ease") == report.compare("toppop", "ease")
