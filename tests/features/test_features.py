from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest

from features import genre_affinity, item_catalog_features, item_popularity, user_activity
from tests.conftest import make_events

AS_OF = datetime(2024, 2, 1)  # day 31
ITEMS = pl.DataFrame(
    {
        "item_id": ["a", "b", "c"],
        "genres": [["Drama"], ["Drama", "Comedy"], []],
        "year": [2020, None, 2023],
        "description": ["x", None, ""],
    },
    schema_overrides={"year": pl.Int32},
)


def events() -> pl.DataFrame:
    return make_events(
        [
            ("u", "a", 0, 5.0),
            ("u", "b", 28, 3.0),
            ("v", "a", 29, 4.0),
            ("v", "a", 30, 2.0),
            ("w", "c", 10, 1.0),
        ]
    )


def test_item_popularity_windows_trend_age_and_shrunk_ratings() -> None:
    f = item_popularity(events(), as_of=AS_OF, windows=(7, 30), rating_prior=2.0).sort("item_id")
    a = f.row(0, named=True)
    assert a["item_pop_all"] == 3 and a["item_pop_7d"] == 2 and a["item_pop_30d"] == 2 and a["item_users_all"] == 2
    assert a["item_age_days"] == pytest.approx(31) and a["item_days_since_last"] == pytest.approx(1)
    global_mean = (5 + 3 + 4 + 2 + 1) / 5
    assert a["item_rating_mean"] == pytest.approx((5 + 4 + 2 + 2 * global_mean) / (3 + 2))
    assert a["item_trend"] == pytest.approx((2 / 7 + 1 / 30) / (2 / 30 + 1 / 30))


def test_user_activity_and_catalog_features() -> None:
    u = user_activity(events(), as_of=AS_OF, windows=(7,)).row(0, named=True)
    assert u["user_id"] == "u" and u["user_n_events"] == 2 and u["user_n_events_7d"] == 1
    assert u["user_days_since_last"] == pytest.approx(3) and u["user_tenure_days"] == pytest.approx(31)
    assert u["user_rating_mean"] == pytest.approx(4.0)
    c = item_catalog_features(ITEMS, as_of=AS_OF).sort("item_id")
    assert c["item_years_since_release"].to_list() == [4.0, None, 1.0]
    assert c["item_n_genres"].to_list() == [1, 2, 0]
    assert c["item_has_description"].to_list() == [True, False, False]


def test_genre_affinity_is_the_users_share_of_events_in_the_candidates_genres() -> None:
    pairs = pl.DataFrame({"user_id": ["u", "u", "w", "nobody"], "item_id": ["b", "c", "a", "a"]})
    f = genre_affinity(events(), ITEMS, pairs, as_of=AS_OF)
    assert f.columns == ["user_id", "item_id", "ui_genre_affinity_mean", "ui_genre_affinity_max"]
    rows = {(r["user_id"], r["item_id"]): r for r in f.rows(named=True)}
    # u: 2 events, both Drama, one Comedy -> b (Drama, Comedy): mean (1 + 0.5) / 2, max 1.
    assert rows[("u", "b")]["ui_genre_affinity_mean"] == pytest.approx(0.75)
    assert rows[("u", "b")]["ui_genre_affinity_max"] == pytest.approx(1.0)
    assert rows[("u", "c")]["ui_genre_affinity_mean"] == 0.0  # no genres
    assert rows[("w", "a")]["ui_genre_affinity_max"] == 0.0 and rows[("nobody", "a")]["ui_genre_affinity_max"] == 0.0


def test_a_planted_future_interaction_changes_no_feature() -> None:
    past = events()
    future = pl.concat([past, make_events([("u", "c", 31, 5.0), ("w", "a", 40, 5.0), ("new", "b", 45, 1.0)])])
    pairs = pl.DataFrame({"user_id": ["u", "w", "v"], "item_id": ["c", "a", "b"]})
    for fn in (
        lambda ev: item_popularity(ev, as_of=AS_OF),
        lambda ev: user_activity(ev, as_of=AS_OF),
        lambda ev: genre_affinity(ev, ITEMS, pairs, as_of=AS_OF).sort("user_id"),
        lambda ev: item_popularity(ev.lazy(), as_of=AS_OF),
    ):
        assert fn(past).equals(fn(future))
