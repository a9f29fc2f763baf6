"""A trained version on disk: everything needed to rank with it again, without pickles.

    bundle.json          identity: format, content digest, encoder base model + adapter digests, ranker features,
                         the training window it was fitted on (`trained_until`), data fingerprint, configs
    ranker/              LightGBM text model + features.json (recsys.ranker.LambdaRanker)
    adapter/             the LoRA adapter (peft safetensors + recsys.json); absent when the encoder was not tuned
    head/                the collaborative head (head.npz + head.json); absent when none was trained
    embeddings.parquet   item embeddings made by base + adapter (+ head), with the model version
    events.parquet       the training window (user_id, item_id, timestamp, rating): sources and features are rebuilt
    items.parquet        from it when the bundle is loaded on its own (MLflow pyfunc, re-ranking)

A bundle's ranker and encoder stay fixed; the collaborative sources and point-in-time features are rebuilt on
whatever events a caller passes (`pipeline(...).fit(events, ...)`): the split under evaluation, or all events up
to publishing time.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from recsys.data import schema as S
from recsys.encoder.cache import ItemEmbeddings, embed_items
from recsys.encoder.collab import CollabHead
from recsys.encoder.model import EncoderConfig, TextEncoder
from recsys.encoder.stage import with_head
from recsys.encoder.text import ItemTextConfig, build_item_text
from recsys.evaluation.splits import ProtocolName
from recsys.ranker.model import LambdaRanker
from recsys.ranker.pipeline import TEXT_FEATURES, PipelineConfig, RankingPipeline

BUNDLE_FORMAT = 1
BUNDLE_FILE = "bundle.json"


def _digest_tree(folder: Path) -> str:
    """sha256 over every file's relative path and content, except bundle.json itself."""
    h = hashlib.sha256()
    files = sorted(
        q for q in Path(folder).rglob("*") if q.is_file() and q.relative_to(folder).as_posix() != BUNDLE_FILE
    )
    for p in files:
        h.update(p.relative_to(folder).as_posix().encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


@dataclass(frozen=True)
class ModelBundle:
    """A loaded bundle: its folder, metadata, ranker and embeddings (events and items read on demand)."""

    path: Path
    meta: dict[str, Any]
    ranker: LambdaRanker
    embeddings: ItemEmbeddings | None

    @property
    def digest(self) -> str:
        return str(self.meta["digest"])

    @property
    def adapter_path(self) -> Path | None:
        p = self.path / "adapter"
        return p if p.is_dir() else None

    @property
    def head(self) -> CollabHead | None:
        """The collaborative head applied on top of the encoder's vectors, if the version has one."""
        p = self.path / "head"
        return CollabHead.load(p) if p.is_dir() else None

    @property
    def uses_text(self) -> bool:
        return any(f in TEXT_FEATURES for f in self.ranker.features)

    @property
    def trained_until(self) -> datetime:
        return datetime.fromisoformat(self.meta["trained_until"])

    def events(self) -> pl.DataFrame:
        return pl.read_parquet(self.path / "events.parquet")

    def items(self) -> pl.DataFrame:
        return pl.read_parquet(self.path / "items.parquet")

    def encoder_config(self) -> EncoderConfig:
        # Bundles written before `adapter_scale` existed merged their adapter at full scale: keep that, so their
        # ranker sees the embeddings it was trained on.
        cfg = EncoderConfig.model_validate({"adapter_scale": 1.0, **self.meta["encoder"]})
        adapter = self.adapter_path
        return cfg.model_copy(update={"adapter_path": str(adapter) if adapter else None})

    def embeddings_for(self, items: pl.DataFrame, *, cache_dir: Path | None = None) -> ItemEmbeddings | None:
        """Embeddings of `items` by this bundle's encoder (and head): the stored vectors when they cover the catalog,
        else the catalog re-embedded (only new or changed texts are encoded, through the cache) and mapped by the
        head, so new items land in the space the ranker was trained on."""
        if not self.uses_text:
            return None
        stored = self.embeddings
        wanted = items[S.ITEM_ID].to_list()
        if stored is not None and set(wanted) <= set(stored.item_ids):
            return stored
        text_cfg = ItemTextConfig.model_validate(self.meta["text"])
        emb = embed_items(build_item_text(items, text_cfg), TextEncoder(self.encoder_config()), cache_dir=cache_dir)
        head = self.head
        return with_head(emb, head) if head is not None else emb

    def pipeline(self, *, embeddings: ItemEmbeddings | None = None, seed: int = 42) -> RankingPipeline:
        """An unfitted pipeline that keeps this bundle's ranker; `fit(events, candidates=..., items=...)` rebuilds
        the sources and features on `events`."""
        # Bundles written before these options were trained with raw counts and EASE as the collaborative source.
        legacy = {"relative_counts": False, "blend": {"factors": 16, "weight": 0.0}, "ease_l2": 500.0}
        cfg = PipelineConfig.model_validate({**legacy, **self.meta["pipeline"]})
        protocol: ProtocolName = self.meta.get("protocol", "temporal")
        emb = embeddings if embeddings is not None else self.embeddings
        return RankingPipeline(
            emb if self.uses_text else None,
            cfg=cfg,
            protocol=protocol,
            use_text=self.uses_text,
            seed=seed,
            ranker=self.ranker,
        )


def save_bundle(
    folder: Path,
    *,
    ranker: LambdaRanker,
    embeddings: ItemEmbeddings | None,
    adapter: Path | None,
    events: pl.DataFrame,
    items: pl.DataFrame,
    encoder: EncoderConfig,
    text: ItemTextConfig,
    pipeline: PipelineConfig,
    protocol: str,
    head: CollabHead | None = None,
    extra: dict[str, Any] | None = None,
) -> ModelBundle:
    """Write a bundle into `folder` (replaced if present; written to a sibling temp folder first, then renamed)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ranker.save(tmp / "ranker")
    if adapter is not None:
        shutil.copytree(adapter, tmp / "adapter")
    if head is not None:
        head.save(tmp / "head")
    if embeddings is not None:
        embeddings.save(tmp / "embeddings.parquet")
    events.select(S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.RATING).write_parquet(tmp / "events.parquet")
    items.write_parquet(tmp / "items.parquet")
    from recsys.encoder.model import default_model_path, model_digest

    base = encoder.model_path or default_model_path()
    meta = {
        "format": BUNDLE_FORMAT,
        "digest": _digest_tree(tmp),
        "trained_until": str(events[S.TIMESTAMP].max()),
        "n_events": events.height,
        "n_items": items.height,
        "protocol": protocol,
        "encoder": encoder.model_copy(update={"adapter_path": None}).model_dump(mode="json"),
        "encoder_base_digest": model_digest(base),
        "embeddings_model_version": embeddings.model_version if embeddings is not None else None,
        "head": {"config": head.cfg.model_dump(mode="json"), "result": asdict(head.result)} if head else None,
        "text": text.model_dump(mode="json"),
        "pipeline": pipeline.model_dump(mode="json"),
        "ranker_features": ranker.features,
        **(extra or {}),
    }
    (tmp / BUNDLE_FILE).write_text(json.dumps(meta, indent=2, default=str))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return load_bundle(folder)


def load_bundle(folder: Path) -> ModelBundle:
    """Read a bundle written by `save_bundle`; refuses other formats and tampered contents."""
    folder = Path(folder)
    meta_path = folder / BUNDLE_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: not a model bundle (no {BUNDLE_FILE}); bundles come from save_bundle")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{folder}: bundle format {meta.get('format')!r}, this code reads {BUNDLE_FORMAT}")
    if _digest_tree(folder) != meta["digest"]:
        raise ValueError(f"{folder}: contents do not match the digest in {BUNDLE_FILE} (modified or incomplete)")
    ranker = LambdaRanker.load(folder / "ranker")
    emb_path = folder / "embeddings.parquet"
    embeddings = ItemEmbeddings.load(emb_path) if emb_path.is_file() else None
    return ModelBundle(folder, meta, ranker, embeddings)
