"""The night's steps as they are handed to a step runner (a Prefect task, a plain call): each takes paths, ids and
stage configs, and returns paths, ids or small records. Frames never cross a step boundary: a step reads what it needs
from the night's folder (`work_dir/nights/<night>/`) and writes what it made there or to the content-addressed
stores (adapters, heads, bundles, served models). So a step can be retried alone, run in another process, and a
failed night's inputs stay on disk to look at.

The computations are `recsys.nightly.steps` and `recsys.nightly.publishing`; this module only reads, writes and
reports progress.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from recsys.compute import Engine
from recsys.config import DataConfig, Settings
from recsys.data import load_dataset
from recsys.data.stored import DatasetRef, write_dataset
from recsys.encoder.cache import ItemEmbeddings
from recsys.encoder.collab import CollabHead
from recsys.encoder.stage import with_head
from recsys.evaluation.stored import read_report, read_split, write_report, write_split
from recsys.nightly import publishing, steps
from recsys.progress import count_bar, steps_bar, training_bar
from recsys.registry import GateConfig, GateDecision, Registry, load_bundle
from recsys.registry.tracking import VersionInfo
from recsys.serving import SnapshotStore
from recsys.serving.store import SnapshotInfo

Log = Callable[[str], None]


# -- the night's folder -----------------------------------------------------------------------------------------
def night_folder(work_dir: Path, *, stale_after_s: float = 24 * 3600) -> Path:
    """A new folder for one night's handoffs under `work_dir/nights/`. Folders of earlier nights older than
    `stale_after_s` are removed (a successful night removes its own; a failed one's stays a day to look at)."""
    return publishing.dated_folder(Path(work_dir).resolve() / "nights", stale_after_s=stale_after_s)


# -- data, champion, split --------------------------------------------------------------------------------------
def load_and_validate(data: DataConfig, out: Path) -> DatasetRef:
    """Read and validate the configured dataset; write it to `out` for the later steps."""
    dataset = load_dataset(data.dataset, data_dir=data.data_dir, policy=data.policy, quarantine_dir=data.quarantine_dir)
    return write_dataset(dataset, out)


@dataclass(frozen=True)
class Champion:
    """The champion before tonight: its registry entry and its bundle's folder (downloaded)."""

    info: VersionInfo
    bundle: Path
    adapter: Path | None


def champion(registry: Registry, work_dir: Path) -> Champion | None:
    """The champion's registry entry and bundle folder (checked), or None when there is no champion yet."""
    champ = registry.champion()
    if champ is None:
        return None
    bundle = load_bundle(registry.download(champ.version, Path(work_dir) / "champions" / str(champ.version)))
    return Champion(champ, bundle.path, bundle.adapter_path)


def split(data: DatasetRef, settings: Settings, out: Path) -> Path:
    """The night's evaluation split, written to `out`."""
    return write_split(steps.nightly_split(data.load(), settings.evaluation, settings.run), out)


# -- encoder ----------------------------------------------------------------------------------------------------
def fine_tune(split_dir: Path, data: DatasetRef, settings: Settings, init_adapter: Path | None) -> steps.EncoderOutcome:
    """LoRA fine-tuning (when enabled) with a progress bar; the adapter is content-addressed under `work_dir`."""
    from recsys.encoder.config import fine_tune_enabled

    enc, run, work_dir = settings.encoder, settings.run, settings.nightly.work_dir
    protocol = settings.evaluation.resolved_protocol
    if not fine_tune_enabled(enc):
        return steps.EncoderOutcome(None, None)
    the_split, items = read_split(split_dir), data.load().items
    with training_bar("fine-tuning the encoder") as bar:
        return steps.train_encoder(
            the_split, items, enc, run, protocol=protocol, work_dir=work_dir, init_adapter=init_adapter, progress=bar
        )


def embed(
    data: DatasetRef, settings: Settings, adapter: Path | None, out: Path, *, engine: Engine | None = None
) -> Path:
    """Every item's text embedded (base + adapter, through the cache; new texts in shards on `engine`'s workers
    when it is distributed and they are many); the vectors written to `out`."""
    items = data.load().items
    with count_bar("embedding item texts", items.height) as bar:
        emb = steps.embed_catalog(
            items,
            settings.encoder,
            settings.run,
            adapter,
            progress=bar,
            engine=engine,
            shard_items=settings.compute.shard_items,
        )
    return emb.save(out)


@dataclass(frozen=True)
class HeadOutcome:
    folder: Path  # the head, content-addressed under work_dir/heads/
    result: dict[str, Any]  # what training did (steps, loss, why it stopped)


def collab_head(split_dir: Path, embeddings: Path, settings: Settings) -> HeadOutcome | None:
    """The collaborative head (when enabled) over the embedded catalog, with a progress bar."""
    if not settings.encoder.head.enabled:
        return None
    with steps_bar("training the collaborative head") as bar:
        folder = steps.train_collab_head(
            read_split(split_dir),
            ItemEmbeddings.load(embeddings),
            settings.encoder,
            settings.run,
            protocol=settings.evaluation.resolved_protocol,
            work_dir=settings.nightly.work_dir,
            progress=bar,
            scale=settings.scale,
        )
    assert folder is not None  # enabled
    return HeadOutcome(folder, asdict(CollabHead.load(folder).result))


# -- ranker, evaluation, gate -----------------------------------------------------------------------------------
def train_ranker(
    split_dir: Path,
    data: DatasetRef,
    embeddings: Path,
    head: HeadOutcome | None,
    adapter: Path | None,
    settings: Settings,
    *,
    out: Path,
    meta: dict[str, Any],
) -> Path:
    """Candidates + features + LambdaRank on the split's training window, saved as a bundle at `out`."""
    emb = ItemEmbeddings.load(embeddings)
    loaded_head = CollabHead.load(head.folder) if head is not None else None
    if loaded_head is not None:
        emb = with_head(emb, loaded_head)
    bundle = steps.train_version(
        read_split(split_dir),
        data.load(),
        settings.encoder,
        settings.ranker,
        settings.run,
        protocol=settings.evaluation.resolved_protocol,
        embeddings=emb,
        adapter=adapter,
        head=loaded_head,
        out=out,
        extra_meta=meta,
        scale=settings.scale,
    )
    return bundle.path


def evaluate(
    data: DatasetRef, split_dir: Path, bundles: dict[str, Path], settings: Settings, *, out: Path, log: Log
) -> Path:
    """The bundles beside the nightly's baselines on the night's split; the report written to `out`."""
    report = steps.evaluate_bundles(
        data.load(),
        read_split(split_dir),
        {name: load_bundle(path) for name, path in bundles.items()},
        settings.evaluation,
        settings.run,
        baselines=settings.nightly.baselines,
        progress=log,
        scale=settings.scale,
    )
    return write_report(report, out)


def gate(report: Path, cfg: GateConfig, *, seed: int) -> GateDecision:
    """The candidate against the champion of the report (see `recsys.nightly.steps.gate`)."""
    return steps.gate(read_report(report), cfg, seed=seed)


# -- lists and publishing ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuiltLists:
    """Every user's list as Parquet files, the trending fallback beside them, the ranking model they were made with
    (its folder) and the identities the snapshot records."""

    parts: publishing.ListParts
    fallback: Path
    model: Path
    bundle_digest: str
    data_fingerprint: str


def build_lists(bundle: Path, data: DatasetRef, settings: Settings, *, engine: Engine) -> BuiltLists:
    """The champion's lists for every user, by user partitions through `engine` (`publishing.ranked_lists`)."""
    loaded, dataset = load_bundle(bundle), data.load()
    parts, fallback, model = publishing.configured_lists(loaded, dataset, settings, engine=engine)
    fallback_file = parts.folder / "fallback.parquet"  # removed with the parts once published
    fallback.write_parquet(fallback_file)
    return BuiltLists(parts, fallback_file, model, loaded.digest, dataset.fingerprint)


def publish(store: SnapshotStore, built: BuiltLists, *, model_version: str, meta: dict[str, Any]) -> SnapshotInfo:
    """The built lists published as a new snapshot (streamed, atomic), naming the ranking model they came from."""
    return publishing.publish_parts(
        store,
        built.parts,
        pl.read_parquet(built.fallback),
        model_version=model_version,
        model=built.model,
        bundle_digest=built.bundle_digest,
        data_fingerprint=built.data_fingerprint,
        meta=meta,
    )
