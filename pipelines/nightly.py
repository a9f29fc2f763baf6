"""The nightly flow: load -> split -> fine-tune (warm start) -> embed -> rank -> evaluate vs champion -> register
-> gate -> publish. Only wiring: every step is a `recsys` library call (see `recsys.nightly`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from recsys.config import Settings, load_settings, resolve_feedback
from recsys.data import load_dataset
from recsys.data.dataset import Dataset
from recsys.encoder.stage import with_head
from recsys.nightly import steps
from recsys.registry import CHALLENGER, CHAMPION, Registry, load_bundle
from recsys.registry import runs as mlrun
from recsys.serving import SnapshotStore, open_store

# In-process objects (frames, models) flow between tasks; nothing is worth persisting through Prefect's result
# store, and the expensive step (fine-tuning) is cached by its own content-addressed folder. Retries and timeouts
# sit on the steps whose failures are transient (file reads, the tracking server, the snapshot store); fine-tuning
# and the collaborative head run a fixed number of steps.
_task = {"persist_result": False, "cache_policy": NO_CACHE}


@task(retries=2, retry_delay_seconds=5, timeout_seconds=900, **_task)
def load_data(settings: Settings) -> Dataset:
    """Read and validate (retried: the files may sit on a flaky network share)."""
    d = settings.data
    return load_dataset(d.dataset, policy=d.policy, quarantine_dir=d.quarantine_dir)


@task(retries=2, retry_delay_seconds=5, timeout_seconds=600, **_task)
def champion_bundle(registry: Registry, work_dir: Path):
    """The champion's bundle (downloaded from the registry; retried: the tracking server may be remote)."""
    champ = registry.champion()
    if champ is None:
        return None, None
    return champ, load_bundle(registry.download(champ.version, work_dir / "champions" / str(champ.version)))


@task(**_task)
def fine_tune_encoder(split, items, settings: Settings, init_adapter: Path | None) -> steps.EncoderOutcome:
    from recsys.encoder.stage import fine_tune_enabled
    from recsys.progress import training_bar

    if not fine_tune_enabled(settings.encoder):  # no bar for a step that does not run
        return steps.train_encoder(split, items, settings, work_dir=settings.nightly.work_dir, init_adapter=None)
    with training_bar("fine-tuning the encoder") as bar:
        return steps.train_encoder(
            split, items, settings, work_dir=settings.nightly.work_dir, init_adapter=init_adapter, progress=bar
        )


@task(**_task)
def embed(items, settings: Settings, adapter: Path | None):
    from recsys.progress import count_bar

    with count_bar("embedding item texts", items.height) as bar:
        return steps.embed_catalog(items, settings, adapter, progress=bar)


@task(**_task)
def collab_head(split, embeddings, settings: Settings):
    from recsys.progress import steps_bar

    with steps_bar("training the collaborative head") as bar:
        return steps.train_collab_head(split, embeddings, settings, work_dir=settings.nightly.work_dir, progress=bar)


@task(**_task)
def train_ranker(split, dataset: Dataset, settings: Settings, embeddings, adapter, head, out: Path, meta: dict):
    return steps.train_version(
        split, dataset, settings, embeddings=embeddings, adapter=adapter, head=head, out=out, extra_meta=meta
    )


@task(**_task)
def evaluate_versions(dataset, split, bundles: dict, settings: Settings):
    logger = get_run_logger()
    return steps.evaluate_bundles(
        dataset, split, bundles, settings, baselines=settings.nightly.baselines, progress=logger.info
    )


@task(retries=2, retry_delay_seconds=5, timeout_seconds=600, **_task)
def record(registry: Registry, run_id: str, report, decision, folder: Path) -> None:
    mlrun.log_evaluation(registry, run_id, report, folder=folder)
    mlrun.log_json(registry, run_id, "gate.json", decision.to_dict())


@task(**_task)
def register(registry: Registry, run_id: str, bundle_path: Path, tags: dict[str, str]):
    return mlrun.register_bundle(registry, run_id, bundle_path, tags=tags)


@task(**_task)
def build_lists(bundle, dataset: Dataset, settings: Settings):
    return steps.ranked_lists(bundle, dataset, settings, k=settings.nightly.serving_k)


@task(retries=2, retry_delay_seconds=2, timeout_seconds=600, **_task)
def publish(store: SnapshotStore, lists, fallback, model_version: str, bundle, model, dataset, work_dir, meta: dict):
    return steps.publish(
        store,
        lists,
        fallback,
        model_version=model_version,
        bundle=bundle,
        model=model,
        dataset=dataset,
        work_dir=work_dir,
        meta=meta,
    )


def _summary(**kw: Any) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in kw.items()}


@flow(name="nightly", log_prints=True)
def nightly(config_path: str | None = None, force: bool = False, overrides: dict | None = None) -> dict[str, Any]:
    """One night: train a version, evaluate it against the champion, register it, promote it through the gate, and
    publish the champion's lists. Re-running on identical inputs registers nothing new (unless `force`)."""
    logger = get_run_logger()
    settings = load_settings(Path(config_path) if config_path else None, **(overrides or {}))
    cfg = settings.nightly
    seconds: dict[str, float] = {}
    registry = Registry(settings.tracking)
    store = open_store(settings.serving, default_path=cfg.store_path, retention=cfg.retention)
    with steps.timed(seconds, "load_and_validate"):
        dataset = load_data(settings)
    settings = resolve_feedback(settings, dataset)  # "auto" thresholds: the data's explicit/implicit feedback
    code = steps.code_version()
    key = steps.input_key(dataset, settings, code_version=code, seed=settings.evaluation.seed)
    logger.info(
        "data %s: %s (fingerprint %s), %s feedback (%s), input key %s",
        dataset.name,
        dataset.summary()["n_interactions"],
        dataset.fingerprint[:12],
        dataset.feedback.kind,
        dataset.feedback.reason,
        key,
    )
    existing = registry.find_by_input_key(key)
    if existing is not None and not force:
        logger.info("version %s was trained from identical inputs: nothing to retrain", existing.label)
        champ = registry.champion()
        snapshot = steps.republish_champion(registry, store, settings, dataset=dataset)[0] if champ else None
        return _summary(
            status="unchanged",
            version=existing.version,
            champion=champ.version if champ else None,
            snapshot=snapshot.snapshot_id if snapshot else None,
            store=cfg.store_path,
        )

    # The MLflow run opens now and covers the whole night: settings first, each step's seconds as it finishes, what
    # training did, the evaluation and the gate; a failure marks it FAILED.
    run_id = mlrun.start_run(
        registry,
        run_name=f"nightly-{datetime.now(UTC):%Y%m%dT%H%M%S}",
        tags={
            "recsys.input_key": key,
            "recsys.data_fingerprint": dataset.fingerprint,
            "mlflow.source.git.commit": code,
            "recsys.dataset": dataset.name,
        },
    )
    try:
        params = mlrun.flatten(
            "", settings.model_dump(mode="json", include={"data", "evaluation", "encoder", "ranker", "nightly"})
        )
        params |= {"data.fingerprint": dataset.fingerprint, "code.version": code, "input_key": key}
        mlrun.log_params(registry, run_id, params)
        mlrun.log_metrics(registry, run_id, {"seconds.load_and_validate": seconds["load_and_validate"]})
        return _night(logger, settings, dataset, registry, store, run_id, key, code, existing, seconds)
    except BaseException:
        mlrun.end_run(registry, run_id, failed=True)
        raise


def _night(
    logger,
    settings: Settings,
    dataset: Dataset,
    registry: Registry,
    store: SnapshotStore,
    run_id: str,
    key: str,
    code: str,
    existing,
    seconds: dict[str, float],
) -> dict[str, Any]:
    """The night after the idempotency check, inside the open MLflow run `run_id` (the caller ends it on failure)."""
    cfg = settings.nightly

    @contextmanager
    def step(name: str) -> Iterator[None]:
        with steps.timed(seconds, name):
            yield
        mlrun.log_metrics(registry, run_id, {f"seconds.{name}": seconds[name]})

    with step("champion"):
        champ, champ_bundle = champion_bundle(registry, cfg.work_dir)
    mlrun.log_params(registry, run_id, {"champion.before": champ.label if champ else "none"})
    with step("split"):
        split = steps.nightly_split(dataset, settings)
    init = champ_bundle.adapter_path if (champ_bundle is not None and cfg.warm_start) else None
    with step("fine_tune"):
        enc = fine_tune_encoder(split, dataset.items, settings, init)
    with step("embed"):
        embeddings = embed(dataset.items, settings, enc.adapter)
    with step("collab_head"):
        head = collab_head(split, embeddings, settings)
        if head is not None:
            embeddings = with_head(embeddings, head)
            r = head.result
            logger.info(
                "collaborative head (%s): %s steps (%s), loss %.4f -> %.4f, %.1f s",
                r.objective,
                r.steps,
                r.stopped,
                r.initial_loss,
                r.final_loss,
                r.wall_seconds,
            )
    if enc.result:
        logger.info(
            "LoRA fine-tuning: %s steps, %s pairs, stopped: %s",
            enc.result.get("steps"),
            enc.result.get("pairs_seen"),
            enc.result.get("stopped"),
        )
    else:
        logger.info("LoRA fine-tuning: off ([encoder] enabled_fine_tune; auto = on where a CUDA device is present)")
    meta = {
        "input_key": key,
        "data_fingerprint": dataset.fingerprint,
        "code_version": code,
        "warm_start_from": champ.label if (champ and init) else None,
        "fine_tune": enc.result,
        "collab_head": asdict(head.result) if head is not None else None,
    }
    # What training actually did (steps run, pairs seen, loss, why it stopped), next to the settings.
    fine_tune = {k: v for k, v in (enc.result or {}).items() if k != "history"} or "off"
    trained = mlrun.flatten("trained", {"fine_tune": fine_tune, "collab_head": meta["collab_head"] or "off"})
    mlrun.log_params(registry, run_id, trained)
    with step("train_ranker"):
        folder = key if existing is None else f"{key}-rerun-{datetime.now(UTC):%Y%m%dT%H%M%S}"
        bundle = train_ranker(
            split, dataset, settings, embeddings, enc.adapter, head, cfg.work_dir / "bundles" / folder, meta
        )
    with step("evaluate"):
        versions = {steps.CANDIDATE: bundle} | ({steps.CHAMPION: champ_bundle} if champ_bundle else {})
        report = evaluate_versions(dataset, split, versions, settings)
        decision = steps.gate(report, cfg.gate, seed=settings.evaluation.seed)
    logger.info("gate: %s (%s)", "PROMOTE" if decision.promote else "keep the champion", decision.reason)

    with step("register"):
        record(registry, run_id, report, decision, cfg.work_dir / "runs" / run_id)
        mlrun.log_json(registry, run_id, "data_summary.json", dataset.summary())
        mlrun.log_json(registry, run_id, "split.json", {"params": split.params, "stats": split.stats})
        tags = {
            "recsys.input_key": key,
            "recsys.data_fingerprint": dataset.fingerprint,
            "recsys.code_version": code,
            "recsys.gate": "pass" if decision.promote else "fail",
            "recsys.gate_reason": decision.reason[:500],
            "recsys.bundle_digest": bundle.digest,
        }
        if existing is not None:
            tags["recsys.rerun_of"] = str(existing.version)
        version = register(registry, run_id, bundle.path, tags)
        registry.set_alias(CHALLENGER, version.version)
    # The champion after tonight: the candidate if promoted, else the current champion (its lists refreshed with
    # tonight's data). Lists are built before the alias moves; the alias moves before the atomic publish.
    serving, label = (bundle, version.label) if decision.promote else (champ_bundle, champ.label if champ else None)
    snapshot_id = None
    if serving is not None and label is not None:
        with step("build_lists"):
            lists, fallback, model = build_lists(serving, dataset, settings)
        if decision.promote:
            registry.set_alias(CHAMPION, version.version)
            logger.info("promoted %s to champion", version.label)
        reason = {"input_key": key, "run_id": run_id, "reason": "promoted" if decision.promote else "refresh"}
        with step("publish"):
            snapshot = publish(store, lists, fallback, label, serving, model, dataset, cfg.work_dir, reason)
        snapshot_id = snapshot.snapshot_id
    mlrun.log_json(registry, run_id, "timings.json", seconds)
    mlrun.end_run(registry, run_id)
    champion_now = registry.champion()
    return _summary(
        status="promoted" if decision.promote else "not_promoted",
        version=version.version,
        champion=champion_now.version if champion_now else None,
        gate=decision.to_dict(),
        run_id=run_id,
        tracking_uri=registry.uri,
        snapshot=snapshot_id,
        store=cfg.store_path,
        seconds=seconds,
        metrics={m.name: m.metrics for m in report.models},
    )
