"""Item embedding by shards on a `distributed.LocalCluster` (`[compute] engine = "dask"`): the same vectors as one
local pass, encoded in the workers' processes, cached like a local pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from recsys.compute import ComputeConfig, open_engine
from recsys.encoder.cache import embed_items
from recsys.encoder.model import EncoderConfig, TextEncoder


def _items(n: int) -> pl.DataFrame:
    words = ["red", "blue", "lamp", "chair", "book", "novel", "pump", "valve", "glass", "steel", "oak", "tea"]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=int(rng.integers(2, 12)))) + f" #{i}" for i in range(n)]
    return pl.DataFrame({"item_id": [f"i{i}" for i in range(n)], "text": texts})


def test_shards_on_workers_give_the_local_vectors(tiny_model_master: Path, tmp_path: Path) -> None:
    items = _items(250)
    encoder = TextEncoder(EncoderConfig(model_path=str(tiny_model_master), precision="float32", max_length=32))
    local = embed_items(items, encoder)
    seen: list[int] = []
    with open_engine(ComputeConfig(engine="dask", workers=2)) as engine:
        sharded = embed_items(
            items, encoder, cache_dir=tmp_path / "cache", engine=engine, shard_texts=100, progress=seen.append
        )
        where = engine.where()
    assert len(where) == 3 and all(w.startswith("tcp://127.0.0.1:") for w in where)  # 100 + 100 + 50 texts
    assert seen[0] == 0  # nothing came from the cache
    assert sorted(seen[1:]) == [50, 100, 100]  # the bar advanced shard by shard
    assert sharded.item_ids == local.item_ids and sharded.n_encoded == items.height
    np.testing.assert_allclose(sharded.vectors, local.vectors, atol=1e-5)
    # the shards' vectors went to the cache: a second pass, local this time, encodes nothing
    again = embed_items(items, encoder, cache_dir=tmp_path / "cache")
    assert again.n_encoded == 0
    np.testing.assert_array_equal(again.vectors, sharded.vectors)


def test_few_texts_stay_in_this_process(tiny_model_master: Path) -> None:
    items = _items(30)
    encoder = TextEncoder(EncoderConfig(model_path=str(tiny_model_master), precision="float32", max_length=32))
    with open_engine(ComputeConfig(engine="dask", workers=1)) as engine:
        emb = embed_items(items, encoder, engine=engine, shard_texts=100)
        assert engine.where() == []  # one shard's worth: no task was sent
    assert emb.n_encoded == 30
