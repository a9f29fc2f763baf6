"""The amazon-scientific loader: RecBole benchmark files rebuilt into sequences with derived times and a hold-out."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from recsys.data import DataValidationError, load_amazon_scientific
from recsys.evaluation import make_split, validation_split


def write_recbole(root: Path, sequences: dict[str, list[str]], *, max_history: int = 50) -> None:
    """Write `sequences` (user -> items in order) as RecBole writes its leave-one-out benchmark files."""
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    items = sorted({i for seq in sequences.values() for i in seq})
    index = {i: str(n) for n, i in enumerate(items)}
    users = {u: str(n) for n, u in enumerate(sequences)}
    rows: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for user, seq in sequences.items():
        coded = [index[i] for i in seq]
        for pos in range(len(coded) - 1, 0, -1):  # longest prefix first, as RecBole writes them
            role = "test" if pos == len(coded) - 1 else "valid" if pos == len(coded) - 2 else "train"
            history = " ".join(coded[max(0, pos - max_history) : pos])
            rows[role].append(f"{users[user]}\t{history}\t{coded[pos]}\n")
    for role, lines in rows.items():
        (root / f"Scientific.{role}.inter").write_text(header + "".join(lines))
    (root / "Scientific.item2index").write_text("".join(f"{i}\t{n}\n" for i, n in index.items()))
    (root / "Scientific.user2index").write_text("".join(f"{u}\t{n}\n" for u, n in users.items()))
    text = "".join(f"{i}\t{i} title. Industrial & Scientific Tools. Brand. \n" for i in items)
    (root / "Scientific.text").write_text("item_id:token\ttext:token_seq\n" + text)


SEQUENCES = {
    "alice": ["A1", "A2", "A3", "A4", "A5"],
    "bob": ["A3", "A1", "A3", "A6"],  # a repeat, and the shortest history RecBole writes (one train row)
    "carol": [f"B{n:02d}" for n in range(55)],  # longer than 50 + 1: the test row's history is cut
}


def test_sequences_rebuild_with_times_from_order_and_the_shipped_holdout(tmp_path) -> None:
    write_recbole(tmp_path, SEQUENCES)
    ds = load_amazon_scientific(tmp_path)
    assert ds.interactions.height == sum(len(s) for s in SEQUENCES.values())
    for user, seq in SEQUENCES.items():
        mine = ds.interactions.filter(pl.col("user_id") == user).sort("timestamp")
        assert mine["item_id"].to_list() == seq
        assert mine["timestamp"].to_list() == [datetime(2018, 1, 1) + timedelta(seconds=s) for s in range(len(seq))]
    assert set(ds.interactions["rating"]) == {1.0}
    assert ds.items.filter(pl.col("item_id") == "A1")["title"][0] == "A1 title. Industrial & Scientific Tools. Brand."
    holdout = ds.holdout.sort("user_id", "role")
    assert holdout.select("user_id", "item_id", "role").rows() == [
        ("alice", "A5", "test"),
        ("alice", "A4", "valid"),
        ("bob", "A6", "test"),
        ("bob", "A3", "valid"),
        ("carol", "B54", "test"),
        ("carol", "B53", "valid"),
    ]
    notes = " ".join(ds.report.notes)
    assert "timestamps derived from event order" in notes and "implicit feedback" in notes
    assert ds.summary()["holdout"] == {"test": 3, "valid": 3}


def test_a_history_that_disagrees_with_the_sequence_names_the_file_and_row(tmp_path) -> None:
    write_recbole(tmp_path, SEQUENCES)
    valid = tmp_path / "Scientific.valid.inter"
    lines = valid.read_text().splitlines(keepends=True)
    user, history, target = lines[2].rstrip("\n").split("\t")  # bob's valid row (data row 2)
    lines[2] = f"{user}\t{history} {history.split()[0]}\t{target}\n"
    valid.write_text("".join(lines))
    with pytest.raises(DataValidationError, match=r"Scientific\.valid\.inter: 1 row\(s\) .* first at row 2 \(user 1\)"):
        load_amazon_scientific(tmp_path)


def test_a_user_without_a_test_row_is_an_error(tmp_path) -> None:
    write_recbole(tmp_path, SEQUENCES)
    test = tmp_path / "Scientific.test.inter"
    test.write_text("".join(test.read_text().splitlines(keepends=True)[:-1]))  # drop carol's test row
    with pytest.raises(DataValidationError, match=r"1 user\(s\) without exactly one valid and one test row"):
        load_amazon_scientific(tmp_path)


@pytest.fixture(scope="module")
def scientific(real_data_dir):
    root = real_data_dir / "amazon-scientific"
    if not (root / "Scientific.test.inter").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"amazon-scientific missing at {root} (set RECSYS_DATA_DIR); CI must have it")
        pytest.skip(f"amazon-scientific not found at {root}")
    return load_amazon_scientific(root)


@pytest.mark.realdata
def test_amazon_scientific_counts_and_its_shipped_split(scientific) -> None:
    ds = scientific
    assert ds.interactions.height == 59_427 and ds.items.height == 4385
    assert ds.interactions["user_id"].n_unique() == 8442 and ds.interactions["item_id"].n_unique() == 4385
    assert ds.report.n_quarantined == 0
    last = ds.interactions.sort("timestamp").group_by("user_id").agg(pl.col("item_id", "timestamp").last())
    test = ds.holdout.filter(pl.col("role") == "test").select("user_id", "item_id", "timestamp")
    assert test.height == 8442 and last.join(test, on=["user_id", "item_id", "timestamp"]).height == 8442
    split = make_split(ds.interactions, "fixed", holdout=ds.holdout)
    assert split.test.height == 8442 and split.train.height == 59_427 - 8442
    inner = validation_split(split.train, "fixed")
    valid = ds.holdout.filter(pl.col("role") == "valid").select("user_id", "item_id", "timestamp")
    assert inner.test.height == 8442
    assert inner.test.select(valid.columns).sort("user_id").equals(valid.sort("user_id"))
