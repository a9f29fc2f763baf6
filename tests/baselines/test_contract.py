"""One contract suite for every recommender: each baseline only says how to build itself."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import polars as pl
import pytest

from recsys.baselines import BASELINES, SAR, Recommender, build_baseline
from recsys.encoder import ItemEmbeddings, TextRecommender
from recsys.evaluation import split_temporal, user_metrics
from recsys.ranker import RankingPipeline
from tests.conftest import make_events

# Smaller settings for the tiny synthetic data; every registered baseline is in the suite whether listed here or not.
SMALL: dict[str, dict[str, object]] = {
    "ease": {"l2": 50.0},
    "lowpass": {"factors": 8},
    "ease-lowpass": {"l2": 50.0, "factors": 8, "weight": 0.5},
    "seqnb": {"window": 5},
    "als": {"factors": 16, "iterations": 5},
    "bpr": {"factors": 16, "iterations": 20},
}


def _baseline(_embeddings: ItemEmbeddings, name: str) -> Recommender:
    return build_baseline(name, seed=1, **SMALL.get(name, {}))


# Every recommender: the registered baselines, and the content-aware models (they get the items' text embeddings).
BUILDERS: dict[str, Callable[[ItemEmbeddings], Recommender]] = {
    **{name: partial(_baseline, name=name) for name in BASELINES},
    "text": TextRecommender,
    "pipeline": lambda e: RankingPipeline(e, seed=1),
    "pipeline-no-text": lambda e: RankingPipeline(e, use_text=False, seed=1),
}


@pytest.fixture(scope="module")
def split(synthetic):
    return split_temporal(synthetic.interactions)


@pytest.fixture(scope="module", params=list(BUILDERS))
def fitted(request, split, synthetic, synthetic_embeddings) -> tuple[str, Recommender]:
    model = BUILDERS[request.param](synthetic_embeddings)
    return request.param, model.fit(split.train, candidates=synthetic.items["item_id"].to_list(), items=synthetic.items)


def test_lists_have_k_ranked_unseen_items(fitted, split) -> None:
    _, model = fitted
    users = split.test["user_id"].unique().sort().to_list()[:20]
    recs = model.recommend(users, k=10)
    assert recs.columns == ["user_id", "item_id", "rank", "score"]
    for (user,), g in recs.group_by("user_id"):
        assert g["rank"].to_list() == list(range(1, g.height + 1)) and g.height == 10
        assert g["score"].is_sorted(descending=True)
        seen = set(split.train.filter(pl.col("user_id") == user)["item_id"])
        assert not seen & set(g["item_id"])


def test_only_content_aware_models_list_items_without_training_events(fitted, split) -> None:
    name, model = fitted
    cold = set(split.test["item_id"]) - set(split.train["item_id"])
    recs = model.recommend(split.test["user_id"].unique().to_list(), k=50)
    listed = cold & set(recs["item_id"])
    assert cold
    assert bool(listed) == type(model).scores_cold_items, name


def test_unknown_users_get_an_empty_list(fitted) -> None:
    _, model = fitted
    assert model.recommend(["nobody"], k=5).height == 0


def test_refit_is_deterministic(fitted, split, synthetic) -> None:
    name, model = fitted
    users = split.test["user_id"].unique().sort().to_list()[:30]
    again = BUILDERS[name](model.embeddings if hasattr(model, "embeddings") else None).fit(  # type: ignore[arg-type]
        split.train, candidates=synthetic.items["item_id"].to_list(), items=synthetic.items
    )
    assert model.recommend(users, k=10).equals(again.recommend(users, k=10))


def test_personalised_models_beat_random_ranking(fitted, split) -> None:
    name, model = fitted
    users = split.test["user_id"].unique().to_list()
    ndcg = user_metrics(model.recommend(users, k=10), split.test)["ndcg@10"].mean()
    rng = np.random.default_rng(0)
    items = split.train["item_id"].unique().to_list()
    rand = pl.DataFrame(
        [(u, i, r + 1) for u in users for r, i in enumerate(rng.choice(items, 10, replace=False))],
        schema=["user_id", "item_id", "rank"],
        orient="row",
    )
    assert ndcg > 2 * user_metrics(rand, split.test)["ndcg@10"].mean(), name


def test_sar_known_answer() -> None:
    # Users holding a: 3, b: 2, c: 1; a-b co-occur twice, a-c once. u3 holds only a, with weight 2.
    ev = make_events(
        [
            ("u1", "a", 0, 1.0),
            ("u1", "b", 0, 1.0),
            ("u2", "a", 0, 1.0),
            ("u2", "b", 0, 1.0),
            ("u2", "c", 0, 1.0),
            ("u3", "a", 0, 2.0),
        ]
    )
    model = SAR(half_life_days=None).fit(ev)
    recs = model.recommend(["u3"], k=2)
    # score(j) = affinity(a) * Jaccard(a, j) = 2 * C_aj / (C_aa + C_jj - C_aj)
    cooc_ab, n_a, n_b, n_c, cooc_ac = 2, 3, 2, 1, 1
    assert recs["item_id"].to_list() == ["b", "c"]
    assert recs["score"].to_list() == pytest.approx(
        [2 * cooc_ab / (n_a + n_b - cooc_ab), 2 * cooc_ac / (n_a + n_c - cooc_ac)]
    )
