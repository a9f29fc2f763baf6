"""Label and evaluation users above `[scale] label_users` / `eval_users`: seeded samples stratified by history."""

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


def test_an_evaluation_judges_every_model_on_the_same_bounded_sample(synthetic):
    """Above `[scale] eval_users` test users, `evaluate` judges a stratified seeded sample, the same users for every
    model, and says so in the report; validation grids judge at most `label_users` inner users."""
    from recsys.baselines import ScaleConfig
    from recsys.evaluation.runner import evaluate
    from recsys.evaluation.selection import inner_split
    from recsys.evaluation.splits import validation_split

    full = evaluate(synthetic, protocol="temporal", models=("toppop", "ease"), seed=3)
    n_users = full.split_stats["judged_users"]["users"]
    assert full.split_stats["judged_users"]["mode"] == "all"
    limit = n_users // 2
    scale = ScaleConfig(eval_users=limit, label_users=40)
    part = evaluate(synthetic, protocol="temporal", models=("toppop", "ease"), seed=3, scale=scale)
    info = part.split_stats["judged_users"]
    assert info["mode"] == "sample" and info["of"] == n_users and abs(info["users"] - limit) <= 8
    judged = [set(m.per_user["user_id"].to_list()) for m in part.models]
    assert judged[0] == judged[1] and len(judged[0]) <= info["users"]
    assert part.protocol_params["eval_users"] == limit
    assert part.model("ease").params["validation_ndcg"]  # the l2 grid ran on the sampled inner split
    train = make_split(synthetic.interactions, "temporal", seed=3).train
    assert validation_split(train, "temporal", seed=3).test["user_id"].n_unique() > 40 + 8
    assert inner_split(train, "temporal", seed=3, scale=scale).test["user_id"].n_unique() <= 40 + 8
