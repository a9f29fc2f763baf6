from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pytest

from recsys.encoder import (
    INTEREST_FEATURES,
    InterestConfig,
    ItemEmbeddings,
    TextRecommender,
    interest_features,
    user_interests,
)
from tests.conftest import make_events

# Four items on orthogonal axes, plus "new" (never interacted with) close to axis 0.
VEC = np.array(
    [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0.96, 0.28, 0, 0]],
    dtype=np.float32,
)
EMB = ItemEmbeddings(["a", "b", "c", "d", "new"], VEC, "test", 5)


def test_profile_is_time_decayed_and_rating_weighted() -> None:
    events = make_events([("u", "a", 0, 5.0), ("u", "b", 99, 5.0), ("u", "c", 99, 1.0)])
    as_of = datetime(2024, 4, 10)  # day 100
    decayed = user_interests(events, EMB, as_of=as_of, cfg=InterestConfig(half_life_days=10))
    flat = user_interests(events, EMB, as_of=as_of, cfg=InterestConfig(half_life_days=None))
    p_decay, p_flat = decayed.profile[0], flat.profile[0]
    assert p_decay[1] > 0.99 and p_flat[0] == pytest.approx(p_flat[1])  # recent item dominates when decayed
    assert p_decay[2] == 0 and decayed.negative[0][2] == pytest.approx(1.0)  # the 1-star item is a dislike
    rated = user_interests(make_events([("v", "a", 0, 5.0), ("v", "b", 0, 4.0)]), EMB, as_of=as_of)
    assert rated.profile[0][0] > rated.profile[0][1]  # 5 stars weigh more than 4


def test_features_for_pairs_including_cold_items_and_unknown_users() -> None:
    events = make_events([("u", "a", 0, 5.0), ("u", "b", 1, 4.0), ("u", "d", 2, 2.0)])
    interests = user_interests(events, EMB, as_of=datetime(2024, 2, 1))
    pairs = pl.DataFrame({"user_id": ["u", "u", "u", "ghost"], "item_id": ["new", "c", "nope", "a"]})
    f = interest_features(interests, EMB, pairs)
    assert f.columns == ["user_id", "item_id", *INTEREST_FEATURES]
    new, c, unknown_item, unknown_user = f.rows(named=True)
    assert new["im_recent_max"] == pytest.approx(0.96) and new["im_last"] == pytest.approx(0.28)  # last = b
    assert new["im_recent_mean"] == pytest.approx((0.96 + 0.28) / 2)
    assert new["im_profile"] > c["im_profile"] == pytest.approx(0.0)
    assert new["im_negative"] == pytest.approx(0.0) and f["im_negative"][0] == 0.0
    assert all(unknown_item[k] == 0.0 for k in INTEREST_FEATURES)
    assert all(unknown_user[k] == 0.0 for k in INTEREST_FEATURES)


def test_nothing_at_or_after_the_cutoff_is_used() -> None:
    past = make_events([("u", "a", 0, 5.0), ("u", "b", 1, 4.0)])
    future = pl.concat([past, make_events([("u", "c", 30, 5.0), ("u", "d", 31, 1.0)])])
    as_of = datetime(2024, 1, 20)
    pairs = pl.DataFrame({"user_id": ["u"] * 5, "item_id": ["a", "b", "c", "d", "new"]})
    a = interest_features(user_interests(past, EMB, as_of=as_of), EMB, pairs)
    b = interest_features(user_interests(future, EMB, as_of=as_of), EMB, pairs)
    assert a.equals(b)


def test_text_recommender_ranks_cold_items_by_text() -> None:
    train = make_events([("u", "a", 0, 5.0), ("u", "b", 1, 2.0), ("w", "c", 1, 5.0)])
    model = TextRecommender(EMB).fit(train, candidates=["a", "b", "c", "d", "new"])
    recs = model.recommend(["u"], k=2)
    assert recs["item_id"].to_list()[0] == "new"  # never interacted with, but its text matches u's liked item
    assert "a" not in recs["item_id"].to_list()  # seen items are excluded


def test_auto_threshold_on_implicit_events_makes_every_event_liked() -> None:
    events = make_events([("u", "a", 0, 1.0), ("u", "b", 1, 1.0)])  # a constant rating: implicit feedback
    interests = user_interests(events, EMB, as_of=datetime(2024, 2, 1), cfg=InterestConfig(half_life_days=None))
    assert interests.profile[0][0] > 0 and interests.profile[0][0] == pytest.approx(interests.profile[0][1])
    assert not interests.negative.any()  # nothing is a dislike (a 4.0 threshold made both events dislikes)
    rated = make_events([("u", "a", 0, 5.0), ("u", "b", 1, 1.0)])
    explicit = user_interests(rated, EMB, as_of=datetime(2024, 2, 1))
    assert explicit.profile[0][1] == 0 and explicit.negative[0][1] == pytest.approx(1.0)  # 1 < 0.8 x 5


def test_weighted_profiles_equal_a_running_sum_per_event_bit_for_bit() -> None:
    """The sparse, user-blocked product gives the bits of adding each event's weighted vector in turn (the form it
    replaced, which made an events x dimensions array)."""
    import numpy as np

    import recsys.encoder.interest as interest

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((200, 64)).astype(np.float32)
    users, items, weights = rng.integers(0, 90, 5000), rng.integers(0, 200, 5000), rng.random(5000) * 3
    users[users == 7] = 8  # a user without events: a zero row
    running = np.zeros((90, 64))
    np.add.at(running, users, vectors[items] * weights[:, None])
    expected = interest._normalise(running).astype(np.float32)
    for chunk in (16, 90, interest.PROFILE_CHUNK):
        old, interest.PROFILE_CHUNK = interest.PROFILE_CHUNK, chunk
        try:
            got = interest.weighted_profiles(users, items, weights, vectors.astype(np.float64), 90)
        finally:
            interest.PROFILE_CHUNK = old
        assert got.dtype == np.float32 and np.array_equal(got, expected), chunk
    assert not got[7].any()
