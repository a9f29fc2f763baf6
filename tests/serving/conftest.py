from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from recsys.evaluation.splits import make_split
from recsys.nightly.publishing import publish, ranked_lists
from recsys.ranker import RankingPipeline
from recsys.serving import SQLiteSnapshotStore
from tests.conftest import save_test_bundle


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server on loopback for this test session (Debian's redis-server; .ci/run installs it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server not found: `apt-get install redis-server` (.ci/run installs it)")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def published(synthetic, synthetic_embeddings, tmp_path_factory):
    """A bundle trained on the synthetic data and its lists published, as the nightly flow does. Built once for the
    session (training takes minutes on a small machine). Only test_app's hot-reload test publishes more snapshots
    into its store, after the tests there that read the first one; the other modules use their own stores or do not
    depend on which snapshot is current."""
    root = tmp_path_factory.mktemp("serving")
    split = make_split(synthetic.interactions, "temporal")
    items = synthetic.items
    pipe = RankingPipeline(synthetic_embeddings, protocol="temporal").fit(
        split.train, candidates=items["item_id"].to_list(), items=items
    )
    bundle = save_test_bundle(root / "bundle", pipe, split.train, synthetic, synthetic_embeddings, precision="float32")
    store = SQLiteSnapshotStore(root / "serving.db", retention=5)
    from recsys.config import load_settings

    settings = load_settings(nightly={"serving_k": 50})
    parts, fallback, model = ranked_lists(bundle, synthetic, settings.run, k=50, work_dir=root / "work")
    lists = parts.collect()
    info = publish(
        store,
        lists,
        fallback,
        model_version="recsys/1",
        bundle=bundle,
        model=model,
        dataset=synthetic,
    )
    return {
        "root": root,
        "store": store,
        "bundle": bundle,
        "model": model,
        "lists": lists,
        "info": info,
        "dataset": synthetic,
    }
