"""The encoder stage end to end: training pairs -> LoRA fine-tuning -> item embeddings, for one training window."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from recsys.data.dataset import after_last_event
from recsys.encoder.cache import ItemEmbeddings, embed_items
from recsys.encoder.collab import CollabHead, train_head
from recsys.encoder.config import EncoderStageConfig, fine_tune_enabled
from recsys.encoder.finetune import FineTuneResult, FineTuneStatus, fine_tune
from recsys.encoder.model import TextEncoder
from recsys.encoder.pairs import TrainingPairs, build_pairs
from recsys.encoder.text import build_item_text


def _fingerprint(train: pl.DataFrame) -> str:
    h = hashlib.sha256()
    h.update(str(train.height).encode())
    h.update(str(int(train.hash_rows(seed=0).sum())).encode())  # in-process memo key only (not stable across versions)
    return h.hexdigest()[:16]


def tune_on_window(
    train: pl.DataFrame,
    item_text: pl.DataFrame,
    cfg: EncoderStageConfig,
    *,
    out: Path,
    seed: int = 42,
    init_adapter: Path | None = None,
    progress: Callable[[FineTuneStatus], None] | None = None,
    time_budget_s: float | None = None,
) -> FineTuneResult:
    """Training pairs from `train` (events before its end only) and LoRA fine-tuning with the stage's settings;
    the adapter is written (atomically) to `out`."""
    pairs = build_pairs(train, item_text, as_of=after_last_event(train), cfg=cfg.pairs, seed=seed)
    return tune_pairs(
        pairs, cfg, out=out, seed=seed, init_adapter=init_adapter, progress=progress, time_budget_s=time_budget_s
    )


def tune_pairs(
    pairs: TrainingPairs,
    cfg: EncoderStageConfig,
    *,
    out: Path,
    seed: int = 42,
    init_adapter: Path | None = None,
    progress: Callable[[FineTuneStatus], None] | None = None,
    time_budget_s: float | None = None,
) -> FineTuneResult:
    """LoRA fine-tuning on built pairs with the stage's model, loss and step budget (`time_budget_s`: an optional
    wall-time cap on top)."""
    return fine_tune(
        pairs.train,
        pairs.valid,
        out=out,
        encoder=cfg.model,
        cfg=cfg.fine_tune,
        seed=seed,
        time_budget_s=time_budget_s,
        init_adapter=init_adapter,
        progress=progress,
    )


class TextEmbedder:
    """Fine-tunes the encoder on a training window (only its events) and embeds the catalog.

    Memoised per training window, so the full pipeline and its no-text ablation share one fine-tuning.
    """

    def __init__(
        self,
        cfg: EncoderStageConfig,
        *,
        work_dir: Path,
        seed: int = 42,
        cache_dir: Path | None = None,
        time_budget_s: float | None = None,
        init_adapter: Path | None = None,
        training_progress: Callable[[FineTuneStatus], None] | None = None,
    ) -> None:
        """`cache_dir`: the embedding cache (None: none); `time_budget_s`: an optional wall-time cap of fine-tuning."""
        self.cfg, self.work_dir, self.seed, self.init_adapter = cfg, Path(work_dir), seed, init_adapter
        self.cache_dir, self.time_budget_s = cache_dir, time_budget_s
        self.training_progress = training_progress
        self.results: dict[str, FineTuneResult] = {}
        self.heads: dict[str, CollabHead] = {}
        self._memo: dict[str, ItemEmbeddings] = {}

    def __call__(self, train: pl.DataFrame, items: pl.DataFrame) -> ItemEmbeddings:
        key = _fingerprint(train)
        if key in self._memo:
            return self._memo[key]
        item_text = build_item_text(items, self.cfg.text)
        model_cfg = self.cfg.model
        if fine_tune_enabled(self.cfg):
            adapter = self.work_dir / f"adapter-{key}"
            self.results[key] = tune_on_window(
                train,
                item_text,
                self.cfg,
                out=adapter,
                seed=self.seed,
                init_adapter=self.init_adapter,
                progress=self.training_progress,
                time_budget_s=self.time_budget_s,
            )
            model_cfg = model_cfg.model_copy(update={"adapter_path": str(adapter)})
        emb = embed_items(item_text, TextEncoder(model_cfg), cache_dir=self.cache_dir)
        if self.cfg.head.enabled:
            head = train_head(train, emb.item_ids, emb.vectors, self.cfg.head, seed=self.seed)
            head.save(self.work_dir / f"head-{key}")
            self.heads[key] = head
            emb = with_head(emb, head)
        self._memo[key] = emb
        return emb


def with_head(emb: ItemEmbeddings, head: CollabHead) -> ItemEmbeddings:
    """`emb` mapped by a collaborative head; the model version names the head too (it keys caches and bundles)."""
    digest = hashlib.sha256(head.weight.astype(np.float32).tobytes()).hexdigest()[:12]
    return ItemEmbeddings(emb.item_ids, head.apply(emb.vectors), f"{emb.model_version}+head-{digest}", emb.n_encoded)
