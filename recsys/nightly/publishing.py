"""Publishing steps of the night: every user's list from the champion (by user partitions through the compute
engine), the trending fallback, the atomic publish with the ranking model the lists came from, and re-publishing a
champion (rollback) after checking its bundle and snapshot. Split from `recsys.nightly.steps` (training and
evaluation) so each stays readable."""

from __future__ import annotations

import gc
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import polars as pl

from features import item_popularity
from recsys.compute import Engine, LocalEngine, ScaleConfig, partitions
from recsys.config import RunContext, Settings
from recsys.data import schema as S
from recsys.data.dataset import Dataset, after_last_event
from recsys.data.registry import load_dataset
from recsys.data.stored import DatasetRef
from recsys.nightly.steps import _sha
from recsys.ranker import RankingModel
from recsys.ranker.scoring import MODEL_FILE, forget_loaded, write_lists
from recsys.registry.bundle import ModelBundle, load_bundle
from recsys.registry.tracking import Registry
from recsys.serving.store import SnapshotInfo, SnapshotStore


def served_model_dir(work_dir: Path, bundle: ModelBundle, dataset: Dataset, scale: ScaleConfig | None = None) -> Path:
    """Where the ranking model of `bundle` rebuilt on `dataset` is saved: content-addressed by version, data and the
    scale settings that shape the rebuilt state (`ScaleConfig.shaping`: its sources' forms, its indexes)."""
    key = _sha(bundle.digest, dataset.fingerprint, (scale or ScaleConfig()).shaping())
    return Path(work_dir).resolve() / "served" / "models" / key[:24]


@dataclass(frozen=True)
class ListParts:
    """Every user's list as Parquet files in `folder`, one per user partition (each file holds whole users): what
    the night builds and publishes, passed between its steps as paths, and read one file at a time."""

    folder: Path
    files: tuple[Path, ...]
    n_rows: int

    def frames(self) -> Iterator[pl.DataFrame]:
        """The partitions' lists (user_id, item_id, rank, score), one frame per file."""
        for file in self.files:
            yield pl.read_parquet(file)

    def collect(self) -> pl.DataFrame:
        """All lists in one frame (small data, tests)."""
        parts = list(self.frames())
        return pl.concat(parts) if parts else pl.DataFrame(schema=S.RECOMMENDATION_SCHEMA)

    def remove(self) -> None:
        """Delete the files (once a store holds the lists)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def lists_folder(work_dir: Path, *, stale_after_s: float = 6 * 3600) -> Path:
    """A new folder for one build's list files under `work_dir/served/lists/`; builds left there by a night that
    died before publishing are removed once older than `stale_after_s`."""
    return dated_folder(Path(work_dir).resolve() / "served" / "lists", stale_after_s=stale_after_s)


def dated_folder(root: Path, *, stale_after_s: float) -> Path:
    """A new folder under `root` named by the time and a random tag; folders there older than `stale_after_s` (left
    by runs that died) are removed first."""
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in root.iterdir():
        if old.is_dir() and now - old.stat().st_mtime > stale_after_s:
            shutil.rmtree(old, ignore_errors=True)
    folder = root / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    return folder


def ranked_lists(
    bundle: ModelBundle,
    dataset: Dataset,
    run: RunContext,
    *,
    k: int,
    work_dir: Path,
    trending_days: int = 30,
    scale: ScaleConfig | None = None,
    engine: Engine | None = None,
    partition_users: int = 20_000,
) -> tuple[ListParts, pl.DataFrame, Path]:
    """Every user's top-k by the bundle with the state (sources and features) rebuilt on all events, the trending
    fallback (events in the last `trending_days`), and the folder of that ranking model (what the service loads to
    re-rank exactly as the lists were made). The model is saved first (`served_model_dir`; a folder already there is
    the same model, read back instead of rebuilt); the lists are then built by user
    partitions of `partition_users` (on a cluster, equal ones in whole rounds of its worker threads) through
    `engine` (this process by default, user batches in `scale.batch_threads` threads, or a Dask cluster's workers,
    each loading the saved model and writing its partition's file): the same lists whichever engine builds them,
    never gathered into one frame."""
    folder = served_model_dir(work_dir, bundle, dataset, scale)
    if not (folder / MODEL_FILE).is_file():  # else built by an earlier run from the same version, data and settings
        emb = bundle.embeddings_for(dataset.items, cache_dir=run.cache_dir)
        pipe = bundle.pipeline(embeddings=emb, seed=run.seed_for("ranker"), scale=scale).fit(
            dataset.interactions, candidates=dataset.items[S.ITEM_ID].to_list(), items=dataset.items
        )
        pipe.model_.save(folder)
        # the lists come from the saved model (its arrays mapped, as in the service and on a cluster's workers): the
        # built one goes before they are made, or the process holds two states (GBs at a million users; the state's
        # candidates and indexed tables refer to each other, so collect)
        del pipe, emb
        gc.collect()
    # by id: the partitions, and the users within them, come in the store's key order, so a publish appends to its
    # B-tree instead of inserting all over it (a million users' lists are GBs; first-seen order made each insert a
    # random page)
    users = dataset.interactions[S.USER_ID].unique().sort().to_list()
    engine = engine or LocalEngine()
    parts = [list(p) for p in partitions(users, partition_users, slots=engine.slots())]
    out = lists_folder(work_dir)
    # in this process, user batches side by side in threads; a cluster's workers are its parallelism (one batch
    # at a time in each worker thread)
    threads = (scale or ScaleConfig()).threads() if engine.name == "local" else 1
    written = engine.map(partial(write_lists, str(folder), str(out), k=k, threads=threads), list(enumerate(parts)))
    forget_loaded()  # the local engine's copy: the lists are written, the night goes on without it
    lists = ListParts(out, tuple(Path(p) for p, _ in written), sum(n for _, n in written))
    fallback = trending(dataset.interactions, k=k, window_days=trending_days)
    return lists, fallback, folder


def configured_lists(
    bundle: ModelBundle, dataset: Dataset, settings: Settings, *, engine: Engine | None = None
) -> tuple[ListParts, pl.DataFrame, Path]:
    """`ranked_lists` with the settings' list length, folders, trending window, scale and partitions."""
    return ranked_lists(
        bundle,
        dataset,
        settings.run,
        k=settings.nightly.serving_k,
        work_dir=settings.nightly.work_dir,
        trending_days=settings.ranker.candidates.popular_window_days,
        scale=settings.scale,
        engine=engine,
        partition_users=settings.compute.partition_users,
    )


def trending(events: pl.DataFrame, *, k: int, window_days: int = 30) -> pl.DataFrame:
    """item_id, score: the pipeline's popularity source (events in the last `window_days`, ties by all-time
    count), best first."""
    pop = item_popularity(events, as_of=after_last_event(events), windows=(window_days,))
    score = pl.col(f"item_pop_{window_days}d") + 1e-6 * pl.col("item_pop_all")
    return (
        pop.select(S.ITEM_ID, score.cast(pl.Float64).alias(S.SCORE))
        .sort([S.SCORE, S.ITEM_ID], descending=[True, False])
        .head(k)
    )


def publish(
    store: SnapshotStore,
    lists: ListParts | pl.DataFrame,
    fallback: pl.DataFrame,
    *,
    model_version: str,
    bundle: ModelBundle,
    model: Path,
    dataset: Dataset,
    meta: dict | None = None,
) -> SnapshotInfo:
    """Publish the lists as a new snapshot whose metadata names the ranking model they were made with (`model`: the
    folder `ranked_lists` saved it in: ranker, embeddings and the state built on this data): the service loads it to
    re-rank exactly as the lists were made."""
    return publish_parts(
        store,
        lists,
        fallback,
        model_version=model_version,
        model=model,
        bundle_digest=bundle.digest,
        data_fingerprint=dataset.fingerprint,
        meta=meta,
    )


def publish_parts(
    store: SnapshotStore,
    lists: ListParts | pl.DataFrame,
    fallback: pl.DataFrame,
    *,
    model_version: str,
    model: Path,
    bundle_digest: str,
    data_fingerprint: str,
    meta: dict | None = None,
) -> SnapshotInfo:
    """Publish lists made by the ranking model saved in `model` as a new snapshot whose metadata names that model,
    the bundle and the data. List files are streamed into the store one partition at a time, and removed once
    published."""
    if not (Path(model) / "model.json").is_file():
        raise ValueError(f"{model}: no saved ranking model there; the snapshot would name a model that cannot load")
    full = {**(meta or {}), "model": str(model), "bundle_digest": bundle_digest, "data_fingerprint": data_fingerprint}
    source = lists.frames() if isinstance(lists, ListParts) else lists
    info = store.publish(source, model_version=model_version, fallback=fallback, meta=full)
    if isinstance(lists, ListParts):
        lists.remove()
    return info


def verified_bundle(registry: Registry, version: int, work_dir: Path) -> ModelBundle:
    """The version's bundle, downloaded and checked (format, content digest, ranker, embeddings): raises ValueError
    naming the version and the problem when it cannot serve."""
    try:
        return load_bundle(registry.download(version, Path(work_dir) / "champions" / str(version)))
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"version {version}'s bundle cannot be used: {exc}") from exc


def servable_snapshot(snapshot: SnapshotInfo) -> str | None:
    """None when the snapshot's ranking model (meta "model") loads, else why not (snapshots published without a
    model, by hand or by an older night, have nothing to check)."""
    folder = snapshot.meta.get("model")
    if not folder:
        return None
    try:
        RankingModel.load(Path(str(folder)))
    except (OSError, ValueError, KeyError) as exc:
        return str(exc)
    return None


def republish_champion(
    registry: Registry, store: SnapshotStore, settings: Settings, *, dataset: Dataset | DatasetRef | None = None
) -> tuple[SnapshotInfo, str]:
    """Serve the champion's lists: re-activate its newest published snapshot when there is one (instant rollback),
    else rebuild them on the current data and publish. Returns the snapshot and which of the two happened."""
    champ = registry.champion()
    if champ is None:
        raise ValueError(f"{registry}: no champion to publish")
    current = store.current()
    if current is not None and current.model_version == champ.label:
        return current, "already current"
    # the champion's bundle is checked first: a damaged one is refused before anything is switched
    bundle = verified_bundle(registry, champ.version, settings.nightly.work_dir)
    earlier = next((s for s in store.snapshots() if s.model_version == champ.label), None)
    damaged = servable_snapshot(earlier) if earlier is not None else None
    if earlier is not None and damaged is None:
        return store.activate(earlier.snapshot_id), "re-activated"
    if dataset is None:
        d = settings.data
        dataset = load_dataset(d.dataset, data_dir=d.data_dir, policy=d.policy, quarantine_dir=d.quarantine_dir)
    elif isinstance(dataset, DatasetRef):  # already validated tonight: read back, not validated again
        dataset = dataset.load()
    lists, fallback, model = configured_lists(bundle, dataset, settings)
    snap = publish(
        store,
        lists,
        fallback,
        model_version=champ.label,
        bundle=bundle,
        model=model,
        dataset=dataset,
        meta={"reason": "republish"},
    )
    if earlier is not None and damaged:
        return snap, f"rebuilt (snapshot {earlier.snapshot_id}'s model did not load: {damaged})"
    return snap, "rebuilt"
