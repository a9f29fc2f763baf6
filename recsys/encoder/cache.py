"""Item embeddings cached by (model version, text hash): a nightly run embeds only new or changed texts."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from recsys.data import schema as S
from recsys.encoder.model import EncoderConfig, TextEncoder

if TYPE_CHECKING:
    from recsys.compute import Engine


@dataclass(frozen=True)
class ItemEmbeddings:
    """Unit vectors per item (row i belongs to item_ids[i]) and the encoder version that made them."""

    item_ids: list[str]
    vectors: np.ndarray
    model_version: str
    n_encoded: int  # texts embedded in this call (the rest came from the cache)

    @cached_property
    def row_of(self) -> dict[str, int]:
        """Row of each item id in `vectors` (built once; request paths look items up here)."""
        return {item: i for i, item in enumerate(self.item_ids)}

    @cached_property
    def vectors64(self) -> np.ndarray:
        """The vectors as float64 (made once): products of float32 values are exact there, so sums of them do not
        depend on how a BLAS call is blocked."""
        return self.vectors.astype(np.float64)

    def save(self, path: Path) -> Path:
        """Parquet: item_id, vector (float32), with the model version in the file's metadata. Written atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        frame = pl.DataFrame({S.ITEM_ID: self.item_ids, "vector": self.vectors.astype(np.float32, copy=False)})
        frame.write_parquet(tmp, metadata={"recsys.model_version": self.model_version})
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> ItemEmbeddings:
        """Read a file written by `save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: item embeddings file not found")
        version = pl.read_parquet_metadata(path).get("recsys.model_version")
        if version is None:
            raise ValueError(f"{path}: no recsys.model_version in the Parquet metadata (not written by save)")
        frame = pl.read_parquet(path)
        vectors = frame["vector"].to_numpy().astype(np.float32, copy=False)
        return cls(frame[S.ITEM_ID].to_list(), vectors.reshape(frame.height, -1), version, 0)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def embed_items(
    item_text: pl.DataFrame,
    encoder: TextEncoder,
    *,
    cache_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
    engine: Engine | None = None,
    shard_texts: int = 50_000,
) -> ItemEmbeddings:
    """Embed item_id, text rows, reusing cached vectors of the same (model version, text).

    The cache is one Parquet file per model version under `cache_dir` (text_hash, vector). With a distributed
    `engine` and more than `shard_texts` texts to encode, the texts are encoded in shards of `shard_texts` on the
    engine's workers (`encode_shard`), each loading the same weights at this encoder's precision; the vectors come
    back in order and are cached here.
    """
    texts = item_text["text"].to_list()
    hashes = [text_hash(t) for t in texts]
    cached: dict[str, np.ndarray] = {}
    key = f"{encoder.version}-{str(encoder.dtype).removeprefix('torch.')}"  # bf16 and fp32 vectors differ slightly
    path = Path(cache_dir) / f"{key}.parquet" if cache_dir else None
    if path is not None and path.is_file():
        store = pl.read_parquet(path)
        cached = dict(zip(store["text_hash"].to_list(), store["vector"].to_numpy(), strict=True))
    missing = {h: t for h, t in zip(hashes, texts, strict=True) if h not in cached}  # distinct new texts
    if progress:
        progress(len(texts) - len(missing))  # items served from the cache (or duplicate texts) are done already
    if missing:
        new = _encode(encoder, list(missing.values()), progress, engine, shard_texts)
        cached.update(zip(missing, new, strict=True))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            keys = list(cached)
            tmp = path.with_suffix(".tmp")
            pl.DataFrame({"text_hash": keys, "vector": np.stack([cached[k] for k in keys])}).write_parquet(tmp)
            tmp.replace(path)  # atomic: a crash never leaves a half-written cache
    vectors = np.stack([cached[h] for h in hashes]) if hashes else np.zeros((0, encoder.dim))
    vectors = vectors.astype(np.float32, copy=False)
    return ItemEmbeddings(item_text[S.ITEM_ID].to_list(), vectors, encoder.version, len(missing))


def _encode(
    encoder: TextEncoder,
    texts: list[str],
    progress: Callable[[int], None] | None,
    engine: Engine | None,
    shard_texts: int,
) -> np.ndarray:
    """`texts` encoded here, or in shards on `engine`'s workers when it is distributed and they are many."""
    if engine is None or engine.name == "local" or len(texts) <= shard_texts:
        return encoder.encode(texts, progress=progress)
    shards = [texts[i : i + shard_texts] for i in range(0, len(texts), shard_texts)]
    done = (lambda i: progress(len(shards[i]))) if progress else None
    parts = engine.map(partial(encode_shard, portable(encoder)), shards, done=done)
    return np.concatenate(parts)


def portable(encoder: TextEncoder) -> EncoderConfig:
    """`encoder`'s settings as another process needs them: absolute folders, this process's precision (the cache
    key names it), the device left to the worker (a worker with a GPU uses it)."""
    cfg = encoder.cfg
    precision = "bfloat16" if str(encoder.dtype) == "torch.bfloat16" else "float32"
    return cfg.model_copy(
        update={
            "model_path": str(encoder.path.resolve()),
            "adapter_path": str(encoder.adapter_path.resolve()) if encoder.adapter_path else None,
            "precision": precision,
        }
    )


_WORKER_ENCODERS: dict[str, TextEncoder] = {}  # one loaded encoder per settings, per worker process


def encode_shard(cfg: EncoderConfig, texts: Sequence[str]) -> np.ndarray:
    """One shard's vectors, in a worker process (the encoder is loaded once per process and kept)."""
    key = cfg.model_dump_json()
    if key not in _WORKER_ENCODERS:
        _WORKER_ENCODERS.clear()  # a new adapter tonight: the previous encoder's memory is released
        _WORKER_ENCODERS[key] = TextEncoder(cfg)
    return _WORKER_ENCODERS[key].encode(list(texts))
