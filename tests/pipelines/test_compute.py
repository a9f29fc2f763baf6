"""`[compute] engine = "dask"`: the nightly's list building on a real `distributed.LocalCluster` (2 worker
processes), checked against the local engine on the same data and model."""

from __future__ import annotations

import os

import pytest

from pipelines.nightly import nightly
from recsys.compute import ComputeConfig, LocalEngine, ScaleConfig, open_engine, partitions
from recsys.config import load_settings
from recsys.data import load_dataset
from recsys.nightly import publishing
from recsys.registry import Registry, load_bundle
from recsys.serving.store import FALLBACK_USER, SQLiteSnapshotStore


def _pid(_: int) -> int:
    return os.getpid()


def test_dask_engine_runs_partitions_on_worker_processes():
    with open_engine(ComputeConfig(engine="dask", workers=2)) as engine:
        pids = engine.map(_pid, list(range(8)))
        where = engine.where()
    assert engine.name == "dask" and len(pids) == 8
    assert os.getpid() not in pids  # every partition ran in a worker process, none here
    assert all(w.startswith("tcp://127.0.0.1:") for w in where) and len(where) == 8
    local = LocalEngine()
    assert local.map(_pid, [1, 2]) == [os.getpid()] * 2 and local.where() == ["local", "local"]


def test_nightly_on_a_local_cluster_publishes_the_local_engines_lists(flow_env, tmp_path):
    compute_cfg = {"engine": "dask", "workers": 2, "partition_users": 40, "shard_items": 80}
    # an empty embedding cache: every item text is encoded tonight
    env = {**flow_env, "compute": compute_cfg, "run": {"cache_dir": str(tmp_path / "embeddings")}}
    out = nightly(overrides=env)
    assert out["status"] == "promoted"
    compute = out["compute"]
    # 200 item texts in shards of 80: three tasks, all on the cluster's workers
    assert compute["embed_shards"] == 3
    assert compute["embed_ran_on"] and all(w.startswith("tcp://127.0.0.1:") for w in compute["embed_ran_on"])
    # 120 users in partitions of at most 40 on 2 worker threads: two whole rounds of 30 (not 3 tasks, one worker
    # idling through the last), all on the cluster's workers
    assert compute["engine"] == "dask" and compute["partitions"] == 4
    assert compute["ran_on"] and all(w.startswith("tcp://127.0.0.1:") for w in compute["ran_on"])

    settings = load_settings(**flow_env)
    published = SQLiteSnapshotStore(settings.nightly.store_path).read_all()
    published.pop(FALLBACK_USER)
    champ = Registry(settings.tracking).champion()
    bundle = load_bundle(Registry(settings.tracking).download(champ.version, tmp_path / "champion"))
    dataset = load_dataset(settings.data.dataset)
    parts, fallback, model = publishing.ranked_lists(
        bundle,
        dataset,
        settings.run,
        k=settings.nightly.serving_k,
        work_dir=tmp_path / "work",
        engine=LocalEngine(),
        partition_users=50,
    )
    # one Parquet file per partition of 50 users (whole users in each), under the work folder
    assert [f.name for f in parts.files] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert parts.folder.parent == (tmp_path / "work" / "served" / "lists").resolve()
    per_file = [set(f["user_id"].unique().to_list()) for f in parts.frames()]
    assert [len(u) for u in per_file] == [50, 50, 20] and not set.intersection(*per_file)
    assert parts.n_rows == sum(f.height for f in parts.frames())
    parts_frame = parts.collect().sort("user_id", "rank")
    local = {
        u: (g.sort("rank")["item_id"].to_list(), g.sort("rank")["score"].to_list())
        for (u,), g in parts_frame.group_by("user_id")
    }
    assert set(local) == set(published) and len(local) == 120
    for user, (items, scores) in local.items():
        assert published[user][0] == items, user
        assert published[user][1] == pytest.approx(scores, abs=1e-9), user
    # publishing streams the files into a store, then removes them
    store = SQLiteSnapshotStore(tmp_path / "streamed.db")
    info = publishing.publish(
        store,
        parts,
        fallback,
        model_version="v",
        bundle=bundle,
        model=model,
        dataset=dataset,
    )
    assert info.n_users == 120 and not parts.folder.exists()
    streamed = store.read_all()
    streamed.pop(FALLBACK_USER)
    assert set(streamed) == set(local)
    for user, (items, scores) in local.items():
        assert streamed[user][0] == items and streamed[user][1] == pytest.approx(scores, abs=1e-9), user
    # the saved ranking model is content-addressed: the same version, data and scale settings read it back (no
    # rebuild: building the pipeline would fail here) and make the same lists; settings that shape the state do not
    assert model == publishing.served_model_dir(tmp_path / "work", bundle, dataset, ScaleConfig())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(bundle), "pipeline", None)
        again, _, same = publishing.ranked_lists(
            bundle, dataset, settings.run, k=settings.nightly.serving_k, work_dir=tmp_path / "work", partition_users=70
        )
    assert same == model and again.collect().sort("user_id", "rank").equals(parts_frame)
    threads = ScaleConfig(batch_threads=3)
    assert publishing.served_model_dir(tmp_path / "work", bundle, dataset, threads) == model
    exact = ScaleConfig(item_index="exact")
    assert publishing.served_model_dir(tmp_path / "work", bundle, dataset, exact) != model


def test_partitions_fill_whole_rounds_of_the_slots():
    users = [f"u{i}" for i in range(100_001)]
    one = partitions(users, 20_000)  # one slot: consecutive partitions of the size, the last one shorter
    assert [len(p) for p in one] == [20_000] * 5 + [1]
    two = partitions(users, 20_000, slots=2)  # 6 partitions: 3 rounds of 2, sizes within one
    assert len(two) == 6 and max(map(len, two)) - min(map(len, two)) <= 1 and max(map(len, two)) <= 20_000
    assert [u for p in two for u in p] == users  # every user once, in order
    assert len(partitions(users[:40], 20_000, slots=4)) == 4  # fewer users than a partition: one each slot
    assert partitions(users[:3], 20_000, slots=8) == [[u] for u in users[:3]]  # never an empty partition
    assert partitions([], 10, slots=2) == []
