"""The low-pass filter and its blend with EASE: exact identities, the selection on a validation split, and the
measured gain on ML-100k's published protocol."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.baselines import EASE, EASELowPass, LowPass
from recsys.evaluation import select_ease_lowpass, split_ms_stratified, split_temporal, user_metrics, validation_split
from recsys.scoring.sources import zscore_rows


@pytest.fixture(scope="module")
def split(synthetic):
    return split_temporal(synthetic.interactions)


def test_full_rank_low_pass_is_the_identity_filter(split) -> None:
    """With every component kept, V V^T = I and the filter gives back each user's own history."""
    n_items = split.train["item_id"].n_unique()
    model = LowPass(factors=n_items).fit(split.train)
    rows = np.arange(len(model.user_index_))
    assert np.allclose(model._score(rows), model.seen_.toarray(), atol=1e-8)


def test_low_pass_keeps_the_leading_components_and_is_deterministic(split) -> None:
    a = LowPass(factors=12).fit(split.train)
    b = LowPass(factors=12).fit(split.train)
    rows = np.arange(len(a.user_index_))
    assert np.array_equal(a._score(rows), b._score(rows))
    eight = LowPass(factors=8).fit(split.train)
    # fewer factors = the first columns of the larger fit (what the validation grid relies on)
    assert np.allclose(a._score_with(rows, 8), eight._score(rows), atol=1e-8)
    assert not np.allclose(a._score(rows), eight._score(rows))
    with pytest.raises(ValueError, match="factors"):
        LowPass(factors=0)


def test_blend_is_the_sum_of_per_user_z_scores(split, synthetic) -> None:
    cands = synthetic.items["item_id"].to_list()  # the whole catalog: some items have no training events
    model = EASELowPass(l2=50.0, factors=8, weight=0.7).fit(split.train, candidates=cands)
    rows = np.arange(10)
    parts = model.components(rows)
    valid = np.broadcast_to(model.has_train_events_, parts["ease"].shape) & ~model.seen_[rows].toarray().astype(bool)
    z_ease, z_low = zscore_rows(parts["ease"], valid), zscore_rows(parts["lowpass"], valid)
    for z in (z_ease, z_low):
        masked = np.where(valid, z, np.nan)
        assert np.allclose(np.nanmean(masked, axis=1), 0, atol=1e-9)
        assert np.allclose(np.nanstd(masked, axis=1), 1, atol=1e-9)
    warm = model.has_train_events_
    assert np.allclose(parts["blend"][:, warm], (z_ease + 0.7 * z_low)[:, warm])
    assert (~warm).any() and np.all(parts["blend"][:, ~warm] == 0)  # items without events: neutral
    # the EASE component is EASE itself
    assert np.allclose(parts["ease"], EASE(l2=50.0).fit(split.train, candidates=cands)._score(rows))


def test_weight_zero_recommends_exactly_as_ease(split) -> None:
    users = split.test["user_id"].unique().sort().head(30).to_list()
    ease = EASE(l2=50.0).fit(split.train).recommend(users, k=10)
    blend = EASELowPass(l2=50.0, factors=8, weight=0.0).fit(split.train).recommend(users, k=10)
    assert blend.select("user_id", "item_id", "rank").equals(ease.select("user_id", "item_id", "rank"))


def test_selection_scores_every_combination_on_the_inner_split_and_keeps_the_best(split) -> None:
    inner = validation_split(split.train, "temporal")
    (f, w), scores = select_ease_lowpass(inner, l2=50.0, factors=(4, 8), weights=(0.0, 0.5, 1.0))
    assert set(scores) == {"4x0.0", "4x0.5", "4x1.0", "8x0.5", "8x1.0"}  # weight 0 (EASE alone) scored once
    assert scores[f"{f}x{w}"] == max(scores.values())
    # the score recorded for the chosen pair is what that model gets when fitted on its own
    model = EASELowPass(l2=50.0, factors=f, weight=w).fit(inner.train)
    users = inner.test["user_id"].unique(maintain_order=True).to_list()
    ndcg = user_metrics(model.recommend(users, k=10), inner.test, ks=(10,))["ndcg@10"].mean()
    assert ndcg == pytest.approx(scores[f"{f}x{w}"], abs=1e-6)
    # the selection scores the blend with the item normalisation it is given (the pipeline's `[blend] item_norm`)
    _, scores_half = select_ease_lowpass(inner, l2=50.0, factors=(8,), weights=(1.0,), item_norm=0.5)
    half = EASELowPass(l2=50.0, factors=8, weight=1.0, item_norm=0.5).fit(inner.train)
    ndcg_half = user_metrics(half.recommend(users, k=10), inner.test, ks=(10,))["ndcg@10"].mean()
    assert ndcg_half == pytest.approx(scores_half["8x1.0"], abs=1e-6)


@pytest.mark.realdata
def test_blend_chosen_on_validation_beats_ease_on_ml100k(real_data_dir) -> None:
    """MS Recommenders' protocol on ML-100k: factors and weight chosen on the inner split only; on the test split
    the blend must beat EASE (l2 = 500, the value EASE's own validation picks) by a clear margin."""
    from recsys.config import public_data_dir
    from recsys.data import load_dataset

    ds = load_dataset("ml-100k", data_dir=public_data_dir())
    outer = split_ms_stratified(ds.interactions, seed=42)
    (f, w), _ = select_ease_lowpass(validation_split(outer.train, "ms-stratified"), l2=500.0)
    users = outer.test["user_id"].unique(maintain_order=True).to_list()

    def ndcg(model) -> np.ndarray:
        per_user = user_metrics(model.fit(outer.train).recommend(users, k=10), outer.test, ks=(10,))
        return per_user.sort("user_id")["ndcg@10"].to_numpy()

    ease, blend = ndcg(EASE(l2=500.0)), ndcg(EASELowPass(l2=500.0, factors=f, weight=w))
    assert w > 0
    diff = blend - ease
    assert diff.mean() > 0.005 and diff.mean() / (diff.std(ddof=1) / np.sqrt(len(diff))) > 3  # paired t > 3


def test_a_grid_of_blends_lists_exactly_what_each_blend_recommends(split) -> None:
    """`recommend_grid` shares EASE's and the low-pass scores across combinations: the lists are those of
    `recommend` with each (factors, weight), row for row."""
    users = split.test["user_id"].unique(maintain_order=True).to_list()
    model = EASELowPass(l2=50.0, factors=8, weight=0.0).fit(split.train)
    combos = [(4, 0.0), (4, 0.5), (8, 1.0)]
    grid = model.recommend_grid(users, combos, k=10)
    for f, w in combos:
        model.factors, model.weight = f, w
        assert grid[(f, w)].equals(model.recommend(users, k=10)), (f, w)
