"""Snapshots above `lists_in_memory_max_entries` are served from the store per request: the same answers as lists held
in memory, always from the loaded snapshot, and never from a pruned one."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.nightly.publishing import trending
from recsys.serving import RankingService, ServingConfig, SQLiteSnapshotStore
from recsys.serving.app import create_app
from recsys.serving.service import StoredLists
from tests.serving.test_app import Server, republish


@pytest.fixture(params=["sqlite", "redis"])
def fresh_store(request, tmp_path):
    def make(retention: int = 3):
        if request.param == "sqlite":
            return SQLiteSnapshotStore(tmp_path / "lists.db", retention=retention)
        from recsys.serving.redis_store import RedisSnapshotStore

        url = request.getfixturevalue("redis_url")
        return RedisSnapshotStore(url, prefix=f"stored-{tmp_path.name}", retention=retention)

    return make


def _users(published, n: int = 60) -> list[str]:
    users = published["lists"]["user_id"].unique().sort().to_list()
    rng = np.random.default_rng(4)
    return [str(u) for u in rng.choice(users, n, replace=False)]


def test_lists_from_the_store_answer_as_lists_in_memory(published, fresh_store):
    store = fresh_store()
    lists: pl.DataFrame = published["lists"]
    info = republish(published, store, lists, trending(published["dataset"].interactions, k=20), "recsys/3")
    entries = info.n_users * info.k
    held = RankingService(store, ServingConfig(max_k=50, load_model=False, lists_in_memory_max_entries=entries))
    read = RankingService(store, ServingConfig(max_k=50, load_model=False, lists_in_memory_max_entries=entries - 1))
    assert held.reload() and read.reload()
    assert held.lists_in_memory and not read.lists_in_memory
    # Redis reads wait on the network (the app's thread pool); SQLite's are local reads (the event loop)
    assert read.list_reads_wait is not isinstance(store, SQLiteSnapshotStore) and not held.list_reads_wait
    assert isinstance(read.loaded.lists, StoredLists) and len(read.loaded.lists) == info.n_users
    for user in [*_users(published), "nobody", "brand-new-user"]:
        for k, exclude in ((10, frozenset()), (50, frozenset()), (5, frozenset(lists["item_id"].head(30)))):
            assert read.recommendations(user, k, exclude) == held.recommendations(user, k, exclude), (user, k)
    user = _users(published)[0]
    expected = lists.filter(pl.col("user_id") == user).sort("rank")["item_id"].head(10).to_list()
    with Server(create_app(read)) as http:
        body = http.get(f"/v1/users/{user}/recommendations", params={"k": 10}).json()
        assert [i["item_id"] for i in body["items"]] == expected and body["snapshot_id"] == info.snapshot_id
        cold = http.get("/v1/users/nobody/recommendations", params={"k": 3}).json()
        assert cold["fallback"] is True and len(cold["items"]) == 3


def test_a_pruned_snapshot_is_never_answered_from(published, fresh_store):
    """With retention 1 a publish deletes the snapshot the service still holds (before its next poll): a known user
    gets the new snapshot's list (named as such), never the trending fallback and never a mix."""
    store = fresh_store(retention=1)
    base: pl.DataFrame = published["lists"]
    fallback = trending(published["dataset"].interactions, k=20)
    first = republish(published, store, base, fallback, "recsys/1")
    service = RankingService(store, ServingConfig(max_k=50, load_model=False, lists_in_memory_max_entries=0))
    assert service.reload() and service.loaded.info.snapshot_id == first.snapshot_id
    rotated = base.with_columns(((pl.col("rank") + 7) % 50 + 1).alias("rank"))
    second = republish(published, store, rotated, fallback, "recsys/2")
    assert not store.is_ready(first.snapshot_id)  # pruned while loaded
    user = _users(published)[1]
    body = service.recommendations(user, 10)
    expected = rotated.filter(pl.col("user_id") == user).sort("rank")["item_id"].head(10).to_list()
    assert body["snapshot_id"] == second.snapshot_id and body["fallback"] is False
    assert [i["item_id"] for i in body["items"]] == expected
    assert service.loaded.info.snapshot_id == first.snapshot_id  # the request did not load the new model itself
    cold = service.recommendations("nobody", 3)
    assert cold["fallback"] is True and cold["snapshot_id"] == second.snapshot_id
    assert service.reload() and service.recommendations(user, 10) == body


def test_a_non_finite_score_reads_back_from_the_store(fresh_store) -> None:
    """json writes NaN / Infinity for non-finite floats; the per-request read (orjson first) still reads them."""
    store = fresh_store()
    frame = pl.DataFrame(
        {"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"], "rank": [1, 2, 1], "score": [float("inf"), 0.5, 1.0]},
        schema_overrides={"rank": pl.Int32},
    )
    info = store.publish(frame, model_version="v", fallback=None)
    assert store.list_in(info.snapshot_id, "a") == (["x", "y"], [float("inf"), 0.5])
    assert store.list_in(info.snapshot_id, "b") == (["x"], [1.0]) and store.list_in(info.snapshot_id, "c") is None
    assert store.is_ready(info.snapshot_id) and not store.is_ready("no-such-snapshot")
