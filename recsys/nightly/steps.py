"""The steps of the nightly run as plain library functions; `pipelines/nightly.py` wires them into a Prefect flow.
(`NightlyConfig` lives in `recsys.nightly.config`.)

Semantics of one night (all times from the data, so a re-run on the same data is the same night):

* the evaluation split is the configured protocol (default `auto`: the split the data ships when it has one, else
  `temporal`, the last 20% of events held out);
* a new version = a LoRA adapter fine-tuned (warm-started from the champion's) and/or a collaborative head trained on
  the inner training part of the split's training window + a LambdaRank ranker whose labels come from the inner
  hold-out; none of them ever sees the held-out test events;
* the new version and the champion are evaluated on the same split, the champion with its own adapter and ranker
  and sources rebuilt on the same training window (so the comparison is paired and fair), beside baselines;
* the new version is registered in any case, promoted only through the gate;
* the champion's lists are published for every user with sources and features rebuilt on *all* events: the ranker
  and encoder stay those of the version; the data is the night's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from features import item_popularity
from recsys.baselines import Recommender, ScaleConfig
from recsys.compute import Engine, LocalEngine
from recsys.config import EvaluationConfig, RunContext, Settings
from recsys.data import schema as S
from recsys.data.dataset import Dataset, after_last_event, fingerprint_frames
from recsys.data.registry import load_dataset
from recsys.encoder.cache import ItemEmbeddings, embed_items
from recsys.encoder.collab import CollabHead, train_head
from recsys.encoder.config import EncoderStageConfig
from recsys.encoder.finetune import FineTuneStatus
from recsys.encoder.model import TextEncoder
from recsys.encoder.stage import fine_tune_enabled, tune_on_window
from recsys.encoder.text import build_item_text
from recsys.evaluation.runner import EvaluationReport, environment_info, evaluate
from recsys.evaluation.splits import ProtocolName, Split, make_split, validation_split
from recsys.ranker import RankingModel, RankingPipeline
from recsys.ranker.config import PipelineConfig
from recsys.ranker.scoring import lists_of
from recsys.registry.bundle import ModelBundle, load_bundle, save_bundle
from recsys.registry.gate import GateConfig, GateDecision, decide
from recsys.registry.tracking import Registry
from recsys.serving.store import SnapshotInfo, SnapshotStore

CANDIDATE = "candidate"
CHAMPION = "champion"


def _sha(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x1f")
    return h.hexdigest()


def input_key(dataset: Dataset, settings: Settings, *, code_version: str) -> str:
    """Identity of a night's inputs: data content, every setting that shapes the model (seeds included), code."""
    shaping = settings.model_dump(mode="json", include={"data", "evaluation", "encoder", "ranker", "run", "scale"})
    for folder in ("work_dir", "cache_dir"):  # where things go, not what is trained
        shaping.get("run", {}).pop(folder, None)
    return _sha(dataset.fingerprint, shaping, code_version)[:24]


def code_version() -> str:
    return environment_info().get("git_sha", "unknown")


def nightly_split(dataset: Dataset, ev: EvaluationConfig, run: RunContext) -> Split:
    """The evaluation split of the night (`ev.protocol` resolved for the data)."""
    return make_split(
        dataset.interactions,
        ev.resolved_protocol,
        seed=run.seed_for("split"),
        holdout=dataset.holdout,
        **ev.protocol_params(),
    )


# -- encoder ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncoderOutcome:
    adapter: Path | None  # None: fine-tuning disabled, the pretrained encoder is used
    result: dict[str, Any] | None  # the fine-tuning summary (read back from the adapter when it was reused)


def train_encoder(
    split: Split,
    items: pl.DataFrame,
    enc: EncoderStageConfig,
    run: RunContext,
    *,
    protocol: ProtocolName,
    work_dir: Path,
    init_adapter: Path | None = None,
    progress: Callable[[FineTuneStatus], None] | None = None,
) -> EncoderOutcome:
    """Fine-tune the encoder on the inner training part of the split's training window (the part the ranker's
    labels do not come from). Content-addressed: identical inputs reuse the adapter already on disk."""
    seed = run.seed_for("encoder")
    if not fine_tune_enabled(enc):
        return EncoderOutcome(None, None)
    # the ranker's inner split (its labels' hold-out), whatever this stage's own seed: nothing it trains on may leak
    inner = validation_split(split.train, protocol, seed=run.seed_for("ranker"))
    from recsys.encoder.model import model_digest

    key = _sha(
        fingerprint_frames(inner.train, items),
        enc.model_dump(mode="json"),
        run.fine_tune_time_budget_s,
        model_digest(init_adapter) if init_adapter else None,
        seed,
    )[:20]
    out = Path(work_dir) / "adapters" / key
    if (out / "recsys.json").is_file():
        meta = json.loads((out / "recsys.json").read_text())
        return EncoderOutcome(out, meta.get("result"))
    res = tune_on_window(  # writes the adapter atomically: a crash never leaves a half adapter at `out`
        inner.train,
        build_item_text(items, enc.text),
        enc,
        out=out,
        seed=seed,
        init_adapter=init_adapter,
        progress=progress,
        time_budget_s=run.fine_tune_time_budget_s,
    )
    return EncoderOutcome(out, {**res.to_dict(), "adapter_path": str(out)})


def embed_catalog(
    items: pl.DataFrame,
    enc: EncoderStageConfig,
    run: RunContext,
    adapter: Path | None,
    *,
    progress: Callable[[int], None] | None = None,
) -> ItemEmbeddings:
    """Every item's text embedded by base + adapter; only texts new to this model version are encoded."""
    model_cfg = enc.model.model_copy(update={"adapter_path": str(adapter) if adapter else None})
    text = build_item_text(items, enc.text)
    return embed_items(text, TextEncoder(model_cfg), cache_dir=run.cache_dir, progress=progress)


def train_collab_head(
    split: Split,
    embeddings: ItemEmbeddings,
    enc: EncoderStageConfig,
    run: RunContext,
    *,
    protocol: ProtocolName,
    work_dir: Path,
    progress: Callable[[int, int, float], None] | None = None,
    scale: ScaleConfig | None = None,
) -> CollabHead | None:
    """The collaborative head (`[encoder.head]`, when enabled) trained on the inner training part of the split's
    training window over `embeddings` (base + adapter): like the adapter, it never sees the events the ranker's labels
    come from. Content-addressed: identical inputs reuse the head already on disk."""
    seed = run.seed_for("head")
    if not enc.head.enabled:
        return None
    # the ranker's inner split (its labels' hold-out), whatever this stage's own seed: nothing it trains on may leak
    inner = validation_split(split.train, protocol, seed=run.seed_for("ranker"))
    key = _sha(
        fingerprint_frames(inner.train),
        embeddings.model_version,
        embeddings.item_ids,
        enc.head.model_dump(mode="json"),
        seed,
        (scale or ScaleConfig()).model_dump(mode="json"),
    )[:20]
    out = Path(work_dir) / "heads" / key
    if (out / "head.json").is_file():
        return CollabHead.load(out)
    head = train_head(
        inner.train, embeddings.item_ids, embeddings.vectors, enc.head, seed=seed, progress=progress, scale=scale
    )
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    head.save(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return head


# -- ranker and bundle ------------------------------------------------------------------------------------------
def train_version(
    split: Split,
    dataset: Dataset,
    enc: EncoderStageConfig,
    ranker: PipelineConfig,
    run: RunContext,
    *,
    protocol: ProtocolName,
    embeddings: ItemEmbeddings,
    adapter: Path | None,
    out: Path,
    head: CollabHead | None = None,
    extra_meta: dict[str, Any] | None = None,
    scale: ScaleConfig | None = None,
) -> ModelBundle:
    """Candidates + features + LambdaRank trained on the split's training window; saved as a bundle. `embeddings`
    are the vectors the ranker sees: base + adapter, mapped by `head` when there is one (the bundle carries both)."""
    pipe = RankingPipeline(
        embeddings, cfg=ranker, protocol=protocol, use_text=True, seed=run.seed_for("ranker"), scale=scale
    )
    pipe.fit(split.train, candidates=dataset.items[S.ITEM_ID].to_list(), items=dataset.items)
    return save_bundle(
        out,
        ranker=pipe.ranker_,
        embeddings=embeddings,
        adapter=adapter,
        events=split.train,
        items=dataset.items,
        encoder=enc.model,
        text=enc.text,
        pipeline=pipe.resolved_cfg,
        protocol=protocol,
        state=pipe.state_,
        head=head,
        extra={"label_stats": pipe.label_stats_, **(extra_meta or {})},
    )


# -- evaluation -------------------------------------------------------------------------------------------------
def evaluate_bundles(
    dataset: Dataset,
    split: Split,
    bundles: dict[str, ModelBundle],
    ev: EvaluationConfig,
    run: RunContext,
    *,
    baselines: tuple[str, ...] = (),
    extra_ks: tuple[int, ...] = (5, 20, 50),
    progress: Callable[[str], None] | None = None,
    scale: ScaleConfig | None = None,
) -> EvaluationReport:
    """Each bundle's ranker and encoder with sources rebuilt on the split's training window, beside `baselines`,
    on the same split: per-user metrics line up for paired comparisons."""
    factories: dict[str, Callable[[], Recommender]] = {}
    for name, bundle in bundles.items():
        emb = bundle.embeddings_for(dataset.items, cache_dir=run.cache_dir)
        factories[name] = partial(bundle.pipeline, embeddings=emb, seed=run.seed_for("ranker"), scale=scale)
    return evaluate(
        dataset,
        protocol=ev.resolved_protocol,
        models=baselines,
        k=ev.k,
        extra_ks=tuple(sorted({*ev.extra_ks, *extra_ks})),
        seed=run.seed_for("split"),
        ease_grid=ev.ease_grid,
        protocol_params=ev.protocol_params(),
        extra_models=factories,
        progress=progress,
        split=split,
        scale=scale,
    )


def gate(report: EvaluationReport, cfg: GateConfig, *, seed: int = 42) -> GateDecision:
    """The candidate against the champion of the same report (promoted outright when there is no champion)."""
    cand = report.model(CANDIDATE)
    champ = next((m for m in report.models if m.name == CHAMPION), None)
    return decide(
        cand.metrics,
        cand.per_user,
        champ.metrics if champ else None,
        champ.per_user if champ else None,
        cfg=cfg,
        seed=seed,
    )


# -- publishing -------------------------------------------------------------------------------------------------
def served_model_dir(work_dir: Path, bundle: ModelBundle, dataset: Dataset) -> Path:
    """Where the ranking model of `bundle` rebuilt on `dataset` is saved: content-addressed by version and data."""
    return Path(work_dir).resolve() / "served" / "models" / _sha(bundle.digest, dataset.fingerprint)[:24]


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
) -> tuple[pl.DataFrame, pl.DataFrame, RankingModel]:
    """Every user's top-k by the bundle with the state (sources and features) rebuilt on all events, the trending
    fallback (events in the last `trending_days`), and that ranking model (what the service loads to re-rank exactly
    as the lists were made). The model is saved first (`served_model_dir`); the lists are then built by user
    partitions of `partition_users` through `engine` (this process by default, or a Dask cluster's workers, each
    loading the saved model): the same lists whichever engine builds them."""
    emb = bundle.embeddings_for(dataset.items, cache_dir=run.cache_dir)
    pipe = bundle.pipeline(embeddings=emb, seed=run.seed_for("ranker"), scale=scale).fit(
        dataset.interactions, candidates=dataset.items[S.ITEM_ID].to_list(), items=dataset.items
    )
    model = pipe.model_
    folder = served_model_dir(work_dir, bundle, dataset)
    if not (folder / "model.json").is_file():
        model.save(folder)
    users = dataset.interactions[S.USER_ID].unique(maintain_order=True).to_list()
    parts = [users[i : i + partition_users] for i in range(0, len(users), partition_users)]
    results = (engine or LocalEngine()).map(partial(lists_of, str(folder), k=k), parts)
    lists = pl.concat(results) if results else pl.DataFrame(schema=S.RECOMMENDATION_SCHEMA)
    fallback = trending(dataset.interactions, k=k, window_days=trending_days)
    return lists, fallback, model


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
    lists: pl.DataFrame,
    fallback: pl.DataFrame,
    *,
    model_version: str,
    bundle: ModelBundle,
    model: RankingModel,
    dataset: Dataset,
    work_dir: Path,
    meta: dict | None = None,
) -> SnapshotInfo:
    """Publish the lists as a new snapshot. The ranking model they were made with (ranker, embeddings and the state
    built on this data) is saved first under `work_dir/served/models/`, content-addressed by version and data, and
    the snapshot's metadata names it: the service loads it to re-rank exactly as the lists were made."""
    served = served_model_dir(work_dir, bundle, dataset)
    if not (served / "model.json").is_file():
        model.save(served)
    full = {
        **(meta or {}),
        "model": str(served),
        "bundle_digest": bundle.digest,
        "data_fingerprint": dataset.fingerprint,
    }
    return store.publish(lists, model_version=model_version, fallback=fallback, meta=full)


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
    registry: Registry, store: SnapshotStore, settings: Settings, *, dataset: Dataset | None = None
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
        dataset = load_dataset(d.dataset, policy=d.policy, quarantine_dir=d.quarantine_dir)
    lists, fallback, model = ranked_lists(
        bundle,
        dataset,
        settings.run,
        k=settings.nightly.serving_k,
        work_dir=settings.nightly.work_dir,
        trending_days=settings.ranker.candidates.popular_window_days,
        scale=settings.scale,
    )
    snap = publish(
        store,
        lists,
        fallback,
        model_version=champ.label,
        bundle=bundle,
        model=model,
        dataset=dataset,
        work_dir=settings.nightly.work_dir,
        meta={"reason": "republish"},
    )
    if earlier is not None and damaged:
        return snap, f"rebuilt (snapshot {earlier.snapshot_id}'s model did not load: {damaged})"
    return snap, "rebuilt"
