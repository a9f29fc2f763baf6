"""A trained version on disk: everything needed to rank with it again, without pickles.

    bundle.json          identity: format, content digest, encoder base model + adapter digests, ranker features,
                         the training window it was fitted on (`trained_until`), data fingerprint, configs
    ranker/              LightGBM text model + features.json (recsys.ranker.LambdaRanker)
    adapter/             the LoRA adapter (peft safetensors + recsys.json); absent when the encoder was not tuned
    head/                the collaborative head (head.npz + head.json); absent when none was trained
    embeddings.parquet   item embeddings made by base + adapter (+ head), with the model version
    state/               the training window's fitted state (recsys.ranker.RankingState): `model()` scores with it
                         as trained, without fitting anything (MLflow pyfunc)
    events.parquet       the training window (user_id, item_id, timestamp, rating) and the catalog: a night
    items.parquet        rebuilds the sources and features on another window from them (`pipeline(...).fit`)

A bundle's ranker and encoder stay fixed; the collaborative sources and point-in-time features are rebuilt on
whatever events a caller passes (`pipeline(...).fit(events, ...)`): the split under evaluation, or all events up
to publishing time (the night then saves that `RankingModel` for the service).

Formats: 2 adds `state/`. A format-1 bundle still evaluates and publishes (its metadata is migrated on load by
`_migrate_v1`); `model()` refuses it with a message, since it has no saved state.
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

from recsys.baselines import ScaleConfig
from recsys.data import schema as S
from recsys.encoder.cache import ItemEmbeddings, embed_items
from recsys.encoder.collab import CollabHead
from recsys.encoder.model import EncoderConfig, TextEncoder
from recsys.encoder.stage import with_head
from recsys.encoder.text import ItemTextConfig, build_item_text
from recsys.evaluation.splits import ProtocolName
from recsys.ranker import TEXT_FEATURES, PipelineConfig, RankingModel, RankingPipeline, RankingState
from recsys.ranker.config import saved_pipeline_config
from recsys.ranker.model import LambdaRanker

BUNDLE_FORMAT = 2
READABLE_FORMATS = (1, 2)
BUNDLE_FILE = "bundle.json"


def _digest_tree(folder: Path) -> str:
    """sha256 over every file's relative path and content, except bundle.json itself."""
    h = hashlib.sha256()
    files = sorted(
        q for q in Path(folder).rglob("*") if q.is_file() and q.relative_to(folder).as_posix() != BUNDLE_FILE
    )
    for p in files:
        h.update(p.relative_to(folder).as_posix().encode())
        with p.open("rb") as f:  # streamed: a million users' state is a 4 GB file, never read into memory whole
            h.update(hashlib.file_digest(f, "sha256").digest())
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
        cfg = EncoderConfig.model_validate(self.meta["encoder"])
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

    def model(self) -> RankingModel:
        """The version as trained: its ranker over the saved state of its training window (nothing is fitted)."""
        state = self.path / "state"
        if not state.is_dir():
            raise ValueError(
                f"{self.path}: bundle format {self.meta['format']} has no saved state; score it through "
                "`pipeline().fit(...)` or retrain it with this version of recsys"
            )
        cfg = saved_pipeline_config(self.meta["pipeline"])
        return RankingModel(
            RankingState.load(state), self.ranker, cfg, embeddings=self.embeddings, use_text=self.uses_text
        )

    def pipeline(
        self,
        *,
        embeddings: ItemEmbeddings | None = None,
        seed: int = 42,
        scale: ScaleConfig | None = None,
        reuse_state: bool = False,
    ) -> RankingPipeline:
        """An unfitted pipeline that keeps this bundle's ranker; `fit(events, candidates=..., items=...)` rebuilds
        the sources and features on `events` (in their sparse forms above `scale`'s limit). `reuse_state`: load the
        bundle's saved state instead when `events` (and everything else the state is built from) are its training
        window's (the night's evaluation of the version it has just trained)."""
        cfg = saved_pipeline_config(self.meta["pipeline"])
        protocol: ProtocolName = self.meta.get("protocol", "temporal")
        emb = embeddings if embeddings is not None else self.embeddings
        return RankingPipeline(
            emb if self.uses_text else None,
            cfg=cfg,
            protocol=protocol,
            use_text=self.uses_text,
            seed=seed,
            ranker=self.ranker,
            scale=scale,
            saved_state=self.path / "state" if reuse_state and (self.path / "state").is_dir() else None,
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
    state: RankingState | None = None,
    head: CollabHead | None = None,
    extra: dict[str, Any] | None = None,
) -> ModelBundle:
    """Write a bundle into `folder` (replaced if present; written to a sibling temp folder first, then renamed)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ranker.save(tmp / "ranker")
    if state is not None:
        state.save(tmp / "state")
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
        "encoder_base_digest": model_digest(Path(base)),
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


def bundle_digest(folder: Path) -> str:
    """The content digest a bundle's metadata records (read without loading or checking the bundle)."""
    return str(json.loads((Path(folder) / BUNDLE_FILE).read_text())["digest"])


def load_bundle(folder: Path) -> ModelBundle:
    """Read a bundle written by `save_bundle`; refuses other formats and tampered contents."""
    folder = Path(folder)
    meta_path = folder / BUNDLE_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: not a model bundle (no {BUNDLE_FILE}); bundles come from save_bundle")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") not in READABLE_FORMATS:
        raise ValueError(
            f"{folder}: bundle format {meta.get('format')!r}; this code reads formats {READABLE_FORMATS} (a newer "
            "recsys wrote it: upgrade)"
        )
    if _digest_tree(folder) != meta["digest"]:
        raise ValueError(f"{folder}: contents do not match the digest in {BUNDLE_FILE} (modified or incomplete)")
    if meta["format"] == 1:
        meta = _migrate_v1(meta)
    ranker = LambdaRanker.load(folder / "ranker")
    emb_path = folder / "embeddings.parquet"
    embeddings = ItemEmbeddings.load(emb_path) if emb_path.is_file() else None
    return ModelBundle(folder, meta, ranker, embeddings)


def _migrate_v1(meta: dict[str, Any]) -> dict[str, Any]:
    """Format-1 metadata as format 2 reads it. Format-1 bundles came from code where some options did not exist yet:
    their adapter was merged at full scale (`adapter_scale` 1), their ranker was trained on raw counts with EASE
    (l2 500) alone as the collaborative source, and their ranker config carried the unused `use_text_features`."""
    pipeline: dict[str, Any] = {"relative_counts": False, "blend": {"factors": 16, "weight": 0.0}, "ease_l2": 500.0}
    pipeline |= meta["pipeline"]
    pipeline["ranker"] = {k: v for k, v in pipeline.get("ranker", {}).items() if k != "use_text_features"}
    return {**meta, "encoder": {"adapter_scale": 1.0, **meta["encoder"]}, "pipeline": pipeline}
