"""Sequence neighbours: the pair counts and the gap score by hand, and that the order of a history matters."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from recsys.baselines import EASE, SequenceNeighbours
from tests.conftest import make_events


def _events(histories: dict[str, list[str]]):
    return make_events([(u, item, day, 4.0) for u, items in histories.items() for day, item in enumerate(items)])


def test_scores_are_the_gap_and_tail_sums_of_the_pair_counts() -> None:
    """window 1, decay 1, no normalisation: A counts consecutive pairs (both directions); user u (a, b) scores j by
    sqrt(A[a, j] * A[j, b]) (j fits between a and b) + A[b, j] (j follows b)."""
    hist = {"u": ["a", "b"], "v": ["a", "c", "b"], "w": ["b", "d"], "x": ["c", "a", "d"]}
    model = SequenceNeighbours(window=1, decay=1.0, item_norm=0.0).fit(_events(hist))
    pairs: dict[tuple[str, str], float] = {}
    for items in hist.values():
        for left, right in itertools.pairwise(items):
            pairs[left, right] = pairs.get((left, right), 0) + 1
            pairs[right, left] = pairs.get((right, left), 0) + 1

    def a(i: str, j: str) -> float:
        return pairs.get((i, j), 0.0)

    scores = model.score(["u"])[0]
    for j in model.item_ids_:
        expected = np.sqrt(a("a", j) * a(j, "b")) + a("b", j)
        assert scores[model.item_index_[j]] == pytest.approx(expected), j
    # c: next to a twice (v, x) and to b once (v), and after b once (v): gap sqrt(2 * 1), tail 1
    assert scores[model.item_index_["c"]] == pytest.approx(np.sqrt(2.0) + 1.0)
    # d: next to a once (x), to b once (w): gap 1, tail 1; seen items keep their raw score, recommend drops them
    assert scores[model.item_index_["d"]] == pytest.approx(2.0)
    assert model.recommend(["u"], k=5)["item_id"].to_list() == ["c", "d"]


def test_window_decay_and_item_normalisation() -> None:
    hist = {"u": ["a", "b", "c"], "v": ["a", "x", "y", "c"]}
    model = SequenceNeighbours(window=2, decay=0.5, item_norm=0.5).fit(_events(hist))
    adj = model.adjacency_.toarray()
    idx = model.item_index_
    n = {"a": 2, "b": 1, "c": 2, "x": 1, "y": 1}  # events per item
    # a-c: two apart in u (0.5); three apart in v, beyond the window
    assert adj[idx["a"], idx["c"]] == pytest.approx(0.5 / np.sqrt(n["a"] * n["c"]))
    assert adj[idx["a"], idx["b"]] == pytest.approx(1.0 / np.sqrt(n["a"] * n["b"]))
    assert adj[idx["a"], idx["y"]] == pytest.approx(0.5 / np.sqrt(n["a"] * n["y"]))
    assert np.allclose(adj, adj.T) and np.all(np.diag(adj) == 0)
    with pytest.raises(ValueError, match="window"):
        SequenceNeighbours(window=0)
    with pytest.raises(ValueError, match="decay"):
        SequenceNeighbours(decay=0.0)


def test_the_order_of_a_history_matters_where_ease_sees_a_set(synthetic) -> None:
    events = synthetic.interactions
    # the same events, each user's timestamps reversed (same set of items per user)
    reversed_ = events.with_columns(
        (events["timestamp"].max() - events["timestamp"] + events["timestamp"].min()).alias("timestamp")
    )
    users = events["user_id"].unique().sort().head(20).to_list()
    forward, backward = SequenceNeighbours().fit(events), SequenceNeighbours().fit(reversed_)
    assert not np.allclose(forward.score(users), backward.score(users))  # the tail term follows the last event
    assert np.allclose(EASE(l2=50.0).fit(events).score(users), EASE(l2=50.0).fit(reversed_).score(users))
    again = SequenceNeighbours().fit(events)
    assert np.array_equal(forward.score(users), again.score(users))
    recs = forward.recommend(users, k=10)
    seen = set(map(tuple, events.select("user_id", "item_id").rows()))
    assert recs.height and not any((u, i) in seen for u, i in recs.select("user_id", "item_id").rows())
