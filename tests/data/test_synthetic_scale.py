"""The streamed synthetic generator of the scale benchmark."""

from __future__ import annotations

import hashlib

import polars as pl

from recsys.data import load_dataset
from recsys.data.synthetic_scale import write_synthetic_scale


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_streams_a_valid_deterministic_dataset(tmp_path):
    a = write_synthetic_scale(tmp_path / "a", n_users=3000, n_items=400, n_events=30_000, seed=5, chunk_users=700)
    b = write_synthetic_scale(tmp_path / "b", n_users=3000, n_items=400, n_events=30_000, seed=5, chunk_users=700)
    assert _digest(a.spec.parent / "events.parquet") == _digest(b.spec.parent / "events.parquet")
    # about the requested size, every repeated (user, item) pair dropped
    assert 0.85 * 30_000 <= a.n_events <= 1.1 * 30_000
    ds = load_dataset(str(a.spec))  # the spec is a dataset like a team's: validated on load
    events, items = ds.interactions, ds.items
    assert events.height == a.n_events and items.height == 400
    assert events.select("user_id", "item_id").is_unique().all()
    assert events["user_id"].n_unique() <= 3000
    # popularity is skewed (Zipf-like), and text comes with every item
    counts = events.group_by("item_id").len()["len"]
    assert counts.max() > 10 * counts.median()
    assert items["title"].str.len_chars().min() > 5 and items["genres"].list.len().min() == 2


def test_a_different_seed_gives_different_data(tmp_path):
    a = write_synthetic_scale(tmp_path / "a", n_users=500, n_items=100, n_events=4000, seed=1)
    b = write_synthetic_scale(tmp_path / "b", n_users=500, n_items=100, n_events=4000, seed=2)
    ea = pl.read_parquet(a.spec.parent / "events.parquet")
    eb = pl.read_parquet(b.spec.parent / "events.parquet")
    assert not ea.equals(eb)
