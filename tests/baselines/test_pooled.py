"""The sparse forms' lists from pools (`recsys.baselines.pooled`) against the dense scoring of the same fitted model."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.baselines import EASE, EASELowPass, ScaleConfig, TopPop
from recsys.baselines._base import Recommender
from recsys.baselines.pooled import PooledBlend

FORCED = ScaleConfig(dense_item_limit=0, neighbours=10)


def _fit(model, synthetic):
    """Fit on the synthetic events with the whole catalog (plus two items nobody has seen) as candidates."""
    train = synthetic.interactions
    cands = [*synthetic.items["item_id"].to_list(), "new-a", "new-b"]
    users = train["user_id"].unique().sort().to_list()
    return model.fit(train, candidates=cands), users


def _ranked_values(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("user_id", "rank").select("user_id", "rank", "score")


def test_pooled_ease_lists_are_the_dense_ones(synthetic):
    """Ten neighbours per item, a small l2 and k = 200 (every valid item of 202 candidates): the lists run past each
    user's positive support into the zeros (by column) and the negative weights, where the pool must still agree
    with the dense ranking."""
    model, users = _fit(EASE(l2=10.0, scale=FORCED), synthetic)
    assert PooledBlend.applies(model.arrays)
    pooled = model.recommend([*users, "nobody"], k=200)
    dense = Recommender.recommend(model, users, k=200)
    assert pooled.equals(dense)
    assert pooled.filter(pl.col("score") == 0).height > 0  # past the support
    assert pooled.filter(pl.col("score") < 0).height > 0  # the negative part of the support was reached
    assert not pooled["item_id"].is_in(["new-a", "new-b"]).any()


@pytest.mark.parametrize("combo", [(4, 0.0), (4, 0.5), (8, 1.0), (16, 0.25)])
def test_pooled_blend_lists_are_the_dense_ones(synthetic, combo):
    model, users = _fit(EASELowPass(l2=200.0, factors=16, weight=0.5, scale=FORCED), synthetic)
    pooled = model.recommend_grid(users, [combo], k=50)[combo]
    model.factors, model.weight = combo
    dense = Recommender.recommend(model, users, k=50)
    # the same score at every rank (items may swap only where two scores tie to the last bits)
    a, b = _ranked_values(pooled), _ranked_values(dense)
    assert a.select("user_id", "rank").equals(b.select("user_id", "rank"))
    np.testing.assert_allclose(a["score"].to_numpy(), b["score"].to_numpy(), rtol=0, atol=1e-9)
    same = pooled.sort("user_id", "rank")["item_id"] == dense.sort("user_id", "rank")["item_id"]
    assert same.mean() > 0.99
    # every pooled score is the dense blend of that item, and no seen item is listed
    scores = model.score(users)
    row = {u: i for i, u in enumerate(users)}
    r = np.array([row[u] for u in pooled["user_id"].to_list()])
    c = np.array([model.item_index_[i] for i in pooled["item_id"].to_list()])
    np.testing.assert_allclose(pooled["score"].to_numpy(), scores[r, c], rtol=0, atol=1e-9)
    seen_rows = np.array([model.user_index_[u] for u in pooled["user_id"].to_list()])
    assert np.asarray(model.seen_[seen_rows, c]).sum() == 0


def test_the_blend_recommends_through_its_pool_and_matches_its_grid(synthetic):
    model, users = _fit(EASELowPass(l2=200.0, factors=8, weight=0.5, scale=FORCED), synthetic)
    assert model.recommend(users, k=10).equals(model.recommend_grid(users, [(8, 0.5)], k=10)[(8, 0.5)])
    dense_form, _ = _fit(EASELowPass(l2=200.0, factors=8, weight=0.5), synthetic)  # below the limit: not pooled
    assert not PooledBlend.applies(dense_form.ease_.arrays, dense_form.lowpass_.arrays)


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_toppop_lists_are_the_dense_ones(synthetic, exclude_seen):
    """One popularity order minus each user's seen items: the dense rows' lists (ties by candidate order, the items
    nobody saw never listed), in batches smaller than the users."""
    model, users = _fit(TopPop(), synthetic)
    assert len(set(model.popularity_[model.has_train_events_].tolist())) < model.has_train_events_.sum()  # ties
    lean = model.recommend([*users, "nobody"], k=150, exclude_seen=exclude_seen, batch_size=7)
    dense = Recommender.recommend(model, users, k=150, exclude_seen=exclude_seen)
    assert lean.equals(dense)
    assert not lean["item_id"].is_in(["new-a", "new-b"]).any()
