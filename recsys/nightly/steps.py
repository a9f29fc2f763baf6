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

from recsys.baselines import Recommender, ScaleConfig
from recsys.compute import Engine
from recsys.config import EvaluationConfig, RunContext, Settings
from recsys.data import schema as S
from recsys.data.dataset import Dataset, fingerprint_frames
from recsys.data.stored import DatasetRef
from recsys.encoder.cache import ItemEmbeddings, embed_items
from recsys.encoder.collab import CollabHead, train_head
from recsys.encoder.config import EncoderStageConfig
from recsys.encoder.finetune import FineTuneStatus
from recsys.encoder.model import TextEncoder
from recsys.encoder.stage import fine_tune_enabled, tune_on_window
from recsys.encoder.text import build_item_text
from recsys.evaluation.runner import EvaluationReport, environment_info, evaluate
from recsys.evaluation.splits import ProtocolName, Split, make_split, validation_split
from recsys.ranker import RankingPipeline
from recsys.ranker.config import PipelineConfig
from recsys.registry.bundle import ModelBundle, save_bundle
from recsys.registry.gate import GateConfig, GateDecision, decide

CANDIDATE = "candidate"
CHAMPION = "champion"


def _sha(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x1f")
    return h.hexdigest()


def input_key(dataset: Dataset | DatasetRef, settings: Settings, *, code_version: str) -> str:
    """Identity of a night's inputs: data content, every setting that shapes the model (seeds included), code."""
    shaping = settings.model_dump(mode="json", include={"data", "evaluation", "encoder", "ranker", "run", "scale"})
    for folder in ("work_dir", "cache_dir"):  # where things go, not what is trained
        shaping.get("run", {}).pop(folder, None)
    shaping.get("data", {}).pop("data_dir", None)  # where the data is read from: its content is the fingerprint
    shaping["scale"] = settings.scale.shaping()  # not how fast (threads)
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
    engine: Engine | None = None,
    shard_items: int = 50_000,
) -> ItemEmbeddings:
    """Every item's text embedded by base + adapter; only texts new to this model version are encoded (in shards
    on `engine`'s workers when it is distributed and they are more than `shard_items`)."""
    model_cfg = enc.model.model_copy(update={"adapter_path": str(adapter) if adapter else None})
    text = build_item_text(items, enc.text)
    return embed_items(
        text, TextEncoder(model_cfg), cache_dir=run.cache_dir, progress=progress, engine=engine, shard_texts=shard_items
    )


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
) -> Path | None:
    """The folder of the collaborative head (`[encoder.head]`, when enabled) trained on the inner training part of
    the split's training window over `embeddings` (base + adapter): like the adapter, it never sees the events the
    ranker's labels come from. Content-addressed under `work_dir/heads/`: identical inputs reuse the head on disk."""
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
        (scale or ScaleConfig()).shaping(),
    )[:20]
    out = Path(work_dir) / "heads" / key
    if (out / "head.json").is_file():
        return out
    head = train_head(
        inner.train, embeddings.item_ids, embeddings.vectors, enc.head, seed=seed, progress=progress, scale=scale
    )
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    head.save(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


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
    on the same split: per-user metrics line up for paired comparisons. A bundle whose saved state was built from
    this very window (the candidate the night has just trained) is scored on that state instead of a rebuild."""
    factories: dict[str, Callable[[], Recommender]] = {}
    for name, bundle in bundles.items():
        emb = bundle.embeddings_for(dataset.items, cache_dir=run.cache_dir)
        factories[name] = partial(
            bundle.pipeline, embeddings=emb, seed=run.seed_for("ranker"), scale=scale, reuse_state=True
        )
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
