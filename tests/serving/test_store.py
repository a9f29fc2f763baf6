from __future__ import annotations

import threading

import numpy as np
import polars as pl
import pytest

from recsys.serving.redis_store import RedisSnapshotStore
from recsys.serving.store import SQLiteSnapshotStore


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path):
    """A factory of store handles on one backing store (SQLite file, or a key prefix on a real redis-server)."""
    if request.param == "sqlite":
        return lambda retention=3: SQLiteSnapshotStore(tmp_path / "s.db", retention=retention)
    url = request.getfixturevalue("redis_url")
    prefix = f"t{abs(hash(request.node.name)) % 10**8}"
    return lambda retention=3: RedisSnapshotStore(url, prefix=prefix, retention=retention)


def lists(gen: int, n_users: int = 50, k: int = 20) -> pl.DataFrame:
    """Every item id carries its generation, so a mixed read is detectable."""
    rows = [(f"u{u}", f"g{gen}-i{(u + r) % 97}", r + 1, float(k - r)) for u in range(n_users) for r in range(k)]
    return pl.DataFrame(rows, schema=["user_id", "item_id", "rank", "score"], orient="row")


def fallback(gen: int) -> pl.DataFrame:
    return pl.DataFrame({"item_id": [f"g{gen}-pop{i}" for i in range(5)], "score": [5.0, 4, 3, 2, 1]})


def test_publish_then_read(make_store):
    store = make_store()
    assert store.current() is None and store.get("u1") is None
    info = store.publish(lists(1), model_version="recsys/1", fallback=fallback(1), meta={"run": "a"})
    assert store.current() == info
    assert (info.n_users, info.k, info.meta) == (50, 20, {"run": "a"})
    got = store.get("u3")
    assert got.items[:3] == ["g1-i3", "g1-i4", "g1-i5"] and got.scores[0] == 20.0
    assert got.snapshot_id == info.snapshot_id and got.model_version == "recsys/1" and not got.fallback
    assert store.get("nobody") is None
    assert store.fallback().items[0] == "g1-pop0" and store.fallback().fallback
    # a second reader on the same file (another process would do the same) sees it
    assert make_store().get("u3").items == got.items


def test_publish_streams_frames_in_turn_and_refuses_a_user_twice(make_store):
    store = make_store()
    whole = lists(1, n_users=30)
    users = [f"u{u}" for u in range(30)]
    read: list[int] = []

    def parts():  # three partitions of whole users, read one at a time (as a night's list files are)
        for i in range(3):
            read.append(i)
            yield whole.filter(pl.col("user_id").is_in(users[i * 10 : (i + 1) * 10]))

    info = store.publish(parts(), model_version="recsys/1", fallback=fallback(1), batch_size=4)
    assert read == [0, 1, 2] and (info.n_users, info.k) == (30, 20) and store.current() == info
    one = make_store()
    assert one.read_all() == store.read_all()
    assert {u: store.get(u).items for u in users} == {
        u: whole.filter(pl.col("user_id") == u).sort("rank")["item_id"].to_list() for u in users
    }
    # a user in two partitions: refused, and the current snapshot stays
    twice = [lists(2, n_users=3), lists(2, n_users=3).filter(pl.col("user_id") == "u1")]
    with pytest.raises(ValueError, match="appears twice"):
        store.publish(iter(twice), model_version="recsys/2")
    assert store.current() == info and store.get("u1").model_version == "recsys/1"


def test_stored_lists_read_back_exactly(make_store):
    """The JSON a publish writes (polars, not json.dumps) reads back bit for bit: scores of every magnitude, item ids
    with quotes, backslashes and non-ASCII text, lists of different lengths, and scores that are not finite."""
    rng = np.random.default_rng(3)
    ids = ["plain", 'quo"te', "back\\slash", "caf\u00e9 \u65e5\u672c", "tab\tnew\nline"]
    rows = []
    for u in range(40):
        scores = rng.standard_normal(u % 7 + 1) * 10.0 ** rng.integers(-12, 12)
        rows += [(f"u{u}", f"{ids[(u + r) % len(ids)]}-{r}", r + 1, float(s)) for r, s in enumerate(scores)]
    rows += [("odd", "a", 1, float("inf")), ("odd", "b", 2, float("nan")), ("odd", "c", 3, -float("inf"))]
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "rank", "score"], orient="row")
    store = make_store()
    info = store.publish(frame.sample(fraction=1.0, shuffle=True, seed=1), model_version="recsys/1", batch_size=7)
    assert (info.n_users, info.k) == (41, 7)
    for (user,), group in frame.group_by("user_id"):
        got = store.get(user)
        assert got.items == group.sort("rank")["item_id"].to_list(), user
        want = group.sort("rank")["score"].to_list()
        assert [repr(s) for s in got.scores] == [repr(s) for s in want], user  # NaN compares by its repr


def test_retention_and_rollback(make_store):
    store = make_store(retention=3)
    infos = [store.publish(lists(g, n_users=5), model_version=f"recsys/{g}") for g in range(1, 6)]
    kept = [s.snapshot_id for s in store.snapshots()]
    assert kept == [i.snapshot_id for i in infos[::-1][:3]]
    back = store.activate(infos[2].snapshot_id)
    assert back.model_version == "recsys/3" and store.get("u0").items[0].startswith("g3-")
    with pytest.raises(KeyError, match="no ready snapshot"):
        store.activate(infos[0].snapshot_id)  # pruned
    # pruning never removes the snapshot being served, even when it is not among the newest
    dropped = store.prune(1)
    assert set(dropped) == {infos[3].snapshot_id}
    assert {s.snapshot_id for s in store.snapshots()} == {infos[4].snapshot_id, infos[2].snapshot_id}
    assert store.current().snapshot_id == infos[2].snapshot_id


def test_failed_publish_leaves_current_snapshot(make_store):
    store = make_store()
    first = store.publish(lists(1), model_version="recsys/1")
    broken = pl.DataFrame({"item_id": ["x"]})  # no score column: fails after the lists were written
    with pytest.raises(pl.exceptions.ColumnNotFoundError):
        store.publish(lists(2), model_version="recsys/2", fallback=broken)
    assert store.current() == first
    assert store.get("u1").items[0].startswith("g1-")
    assert [s.snapshot_id for s in store.snapshots()] == [first.snapshot_id]


def test_publish_during_concurrent_reads_is_atomic(make_store):
    store = make_store(retention=2)
    store.publish(lists(0, n_users=200), model_version="recsys/0")
    stop = threading.Event()
    seen: list[str] = []
    errors: list[str] = []

    def reader() -> None:
        local = make_store(retention=2)
        while not stop.is_set():
            for u in ("u0", "u77", "u199"):
                got = local.get(u)
                if got is None:
                    errors.append(f"{u}: missing")
                    continue
                gens = {i.split("-")[0] for i in got.items}
                if len(gens) != 1 or f"g{got.model_version.split('/')[1]}" not in gens or len(got.items) != 20:
                    errors.append(f"{u}: mixed {gens} in {got.model_version}")
                seen.append(got.model_version)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for gen in range(1, 6):
        store.publish(lists(gen, n_users=200), model_version=f"recsys/{gen}")
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    assert len(set(seen)) >= 2, "readers should have observed more than one snapshot"
    assert store.current().model_version == "recsys/5"


def test_rejects_bad_lists(make_store, tmp_path):
    store = make_store()
    with pytest.raises(ValueError, match="lack columns"):
        store.publish(pl.DataFrame({"user_id": ["a"], "item_id": ["b"]}), model_version="x")
    with pytest.raises(ValueError, match="retention"):
        SQLiteSnapshotStore(tmp_path / "t.db", retention=0)
