"""The ranker's label users above `[scale] label_users`: a seeded sample stratified by history length."""

from __future__ import annotations

import polars as pl

from recsys.evaluation.splits import make_split
from recsys.ranker.selection import sample_label_users


def _bins(split, users: pl.DataFrame) -> dict[int, int]:
    n = split.train.group_by("user_id").agg(pl.len().alias("n"))
    joined = users.join(n, on="user_id", how="left").with_columns(
        (pl.col("n").fill_null(0) + 1).log(2).floor().cast(pl.Int32).alias("bin")
    )
    return dict(joined.group_by("bin").len().iter_rows())


def test_sample_is_bounded_stratified_and_deterministic(synthetic):
    split = make_split(synthetic.interactions, "temporal", seed=1)
    all_users = split.test.select("user_id").unique()
    limit = all_users.height // 3
    sampled, info = sample_label_users(split, limit, seed=7)
    kept = sampled.test.select("user_id").unique()
    assert info["mode"] == "sample" and info["of"] == all_users.height
    assert abs(kept.height - limit) <= len(_bins(split, all_users))  # rounding per stratum
    # each history-length stratum keeps its share of the users (within one user per stratum)
    full, part = _bins(split, all_users), _bins(split, kept)
    for b, n in full.items():
        assert abs(part.get(b, 0) - n * limit / all_users.height) <= 1
    # the kept users' hold-out events are all there; the training window is untouched
    assert sampled.test.height == split.test.join(kept, on="user_id", how="semi").height
    assert sampled.train.equals(split.train)
    again, _ = sample_label_users(split, limit, seed=7)
    assert again.test.equals(sampled.test)
    other, _ = sample_label_users(split, limit, seed=8)
    assert not other.test.select("user_id").unique().sort("user_id").equals(kept.sort("user_id"))


def test_below_the_limit_the_split_is_unchanged(synthetic):
    split = make_split(synthetic.interactions, "temporal", seed=1)
    same, info = sample_label_users(split, 10**6, seed=7)
    assert same is split and info["mode"] == "all"
