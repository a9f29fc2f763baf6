from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from ranx import Qrels, Run
from ranx import evaluate as ranx_evaluate

from recsys.evaluation import coverage, intra_list_diversity, mean_metrics, novelty, user_metrics


def random_run(seed: int, n_users: int = 40, n_items: int = 60, list_len: int = 25):
    rng = np.random.default_rng(seed)
    recs, truth = [], []
    for u in range(n_users):
        for r, i in enumerate(rng.permutation(n_items)[:list_len]):
            recs.append((f"u{u}", f"i{i}", r + 1))
        for i in rng.choice(n_items, rng.integers(1, 20), replace=False):
            truth.append((f"u{u}", f"i{i}"))
    return (
        pl.DataFrame(recs, schema=["user_id", "item_id", "rank"], orient="row"),
        pl.DataFrame(truth, schema=["user_id", "item_id"], orient="row"),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_ranx_on_random_runs(seed: int) -> None:
    recs, truth = random_run(seed)
    ours = mean_metrics(user_metrics(recs, truth, ks=(10, 5, 20)))
    qrels = Qrels({u: dict.fromkeys(g["item_id"].to_list(), 1) for (u,), g in truth.group_by("user_id")})
    run = Run(
        {u: {i: 1.0 / r for i, r in g.select("item_id", "rank").iter_rows()} for (u,), g in recs.group_by("user_id")}
    )
    ref = ranx_evaluate(
        qrels,
        run,
        ["ndcg@10", "ndcg@5", "ndcg@20", "precision@10", "recall@10", "recall@20", "map@10", "mrr@10", "hit_rate@10"],
    )
    assert ours["ndcg@10"] == pytest.approx(ref["ndcg@10"], abs=1e-12)
    assert ours["ndcg@5"] == pytest.approx(ref["ndcg@5"], abs=1e-12)
    assert ours["ndcg@20"] == pytest.approx(ref["ndcg@20"], abs=1e-12)
    assert ours["precision@10"] == pytest.approx(ref["precision@10"], abs=1e-12)
    assert ours["recall@10"] == pytest.approx(ref["recall@10"], abs=1e-12)
    assert ours["recall@20"] == pytest.approx(ref["recall@20"], abs=1e-12)
    assert ours["map"] == pytest.approx(ref["map@10"], abs=1e-12)  # ranx map@k normalises by |relevant|
    assert ours["mrr"] == pytest.approx(ref["mrr@10"], abs=1e-12)
    assert ours["hitrate@10"] == pytest.approx(ref["hit_rate@10"], abs=1e-12)


def test_known_answer_including_map_at_k_and_missing_user() -> None:
    recs = pl.DataFrame({"user_id": ["a"] * 3, "item_id": ["x", "y", "z"], "rank": [1, 2, 3]})
    truth = pl.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["y", "w", "x"]})
    per_user = user_metrics(recs, truth, ks=(2,))
    a = per_user.filter(pl.col("user_id") == "a").row(0, named=True)
    assert a["precision@2"] == 0.5 and a["recall@2"] == 0.5 and a["hitrate@2"] == 1.0
    assert a["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert a["map"] == pytest.approx(0.5 / 2) and a["map@2"] == pytest.approx(0.5 / 2) and a["mrr"] == 0.5
    b = per_user.filter(pl.col("user_id") == "b").row(0, named=True)  # no recommendations -> zeros, still judged
    assert b["ndcg@2"] == 0.0 and per_user.height == 2


def test_beyond_accuracy_metrics() -> None:
    recs = pl.DataFrame({"user_id": ["a", "a", "b", "b"], "item_id": ["x", "y", "x", "z"], "rank": [1, 2, 1, 2]})
    assert coverage(recs, k=2, n_candidates=6) == pytest.approx(0.5)
    train = pl.DataFrame({"user_id": ["a", "b", "c", "d"], "item_id": ["x", "x", "y", "q"]})
    # x: 2 of 4 users -> 1 bit; y: 1/4 -> 2 bits; z (no training users) counts as 1 -> 2 bits
    assert novelty(recs, train, k=2) == pytest.approx((1 + 2 + 1 + 2) / 4)
    items = pl.DataFrame({"item_id": ["x", "y", "z"], "genres": [["A"], ["A", "B"], ["C"]]})
    # a: J(x,y)=1/2 -> distance 0.5; b: x,z disjoint -> 1.0
    assert intra_list_diversity(recs, items, k=2) == pytest.approx(0.75)
