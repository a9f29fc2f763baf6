"""One night, in order, with one owner: the idempotency check, the MLflow run that covers the night, every step and
its timing, the registry's aliases and the atomic publish. `pipelines/nightly.py` only decides how each step runs
(as a Prefect task with its retries) through `run_step`; run locally, the steps are plain calls.

Semantics are in `recsys.nightly.steps`' module docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from recsys.compute import open_engine
from recsys.config import Settings, resolve_feedback
from recsys.data import load_dataset
from recsys.data.dataset import Dataset
from recsys.encoder.stage import with_head
from recsys.nightly import publishing, steps
from recsys.nightly.metering import metered
from recsys.progress import count_bar, steps_bar, training_bar
from recsys.registry import CHALLENGER, CHAMPION, Registry, load_bundle
from recsys.registry import runs as mlrun
from recsys.serving import SnapshotStore, open_store

T = TypeVar("T")
Log = Callable[[str], None]


class StepRunner(Protocol):
    """Runs one named step of the night: `run_step(name, fn, *args, **kwargs)` returns `fn(*args, **kwargs)`."""

    def __call__(self, name: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...


def call_directly(name: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """The plain runner: each step is a function call."""
    return fn(*args, **kwargs)


def load_data(settings: Settings) -> Dataset:
    """Read and validate the configured dataset."""
    d = settings.data
    return load_dataset(d.dataset, policy=d.policy, quarantine_dir=d.quarantine_dir)


def champion_bundle(registry: Registry, work_dir: Path) -> tuple[Any, Any]:
    """(the champion's registry entry, its bundle), or (None, None) when there is no champion yet."""
    champ = registry.champion()
    if champ is None:
        return None, None
    return champ, load_bundle(registry.download(champ.version, work_dir / "champions" / str(champ.version)))


def fine_tune_encoder(split: Any, items: Any, settings: Settings, init_adapter: Path | None) -> steps.EncoderOutcome:
    """LoRA fine-tuning with a progress bar (no bar for a step that does not run)."""
    from recsys.encoder.config import fine_tune_enabled

    enc, run, work_dir = settings.encoder, settings.run, settings.nightly.work_dir
    protocol = settings.evaluation.resolved_protocol
    if not fine_tune_enabled(enc):
        return steps.train_encoder(split, items, enc, run, protocol=protocol, work_dir=work_dir)
    with training_bar("fine-tuning the encoder") as bar:
        return steps.train_encoder(
            split, items, enc, run, protocol=protocol, work_dir=work_dir, init_adapter=init_adapter, progress=bar
        )


def embed(items: Any, settings: Settings, adapter: Path | None) -> Any:
    with count_bar("embedding item texts", items.height) as bar:
        return steps.embed_catalog(items, settings.encoder, settings.run, adapter, progress=bar)


def collab_head(split: Any, embeddings: Any, settings: Settings) -> Any:
    with steps_bar("training the collaborative head") as bar:
        return steps.train_collab_head(
            split,
            embeddings,
            settings.encoder,
            settings.run,
            protocol=settings.evaluation.resolved_protocol,
            work_dir=settings.nightly.work_dir,
            progress=bar,
            scale=settings.scale,
        )


def record(registry: Registry, run_id: str, report: Any, decision: Any, folder: Path) -> None:
    mlrun.log_evaluation(registry, run_id, report, folder=folder)
    mlrun.log_json(registry, run_id, "gate.json", decision.to_dict())


def _summary(**kw: Any) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in kw.items()}


def run_night(
    settings: Settings, *, force: bool = False, run_step: StepRunner = call_directly, log: Log = print
) -> dict[str, Any]:
    """One night: train a version, evaluate it against the champion, register it, promote it through the gate, and
    publish the champion's lists. Re-running on identical inputs registers nothing new (unless `force`). Returns a
    summary (status, versions, gate, run id, snapshot, per-step seconds, metrics)."""
    cfg = settings.nightly
    seconds: dict[str, float] = {}
    peaks: dict[str, float] = {}  # each step's peak resident memory, MiB
    registry = Registry(settings.tracking)
    store = open_store(settings.serving, default_path=cfg.store_path, retention=cfg.retention)
    with metered(seconds, peaks, "load_and_validate"):
        dataset = run_step("load_and_validate", load_data, settings)
    settings = resolve_feedback(settings, dataset)  # "auto" thresholds: the data's explicit/implicit feedback
    code = steps.code_version()
    key = steps.input_key(dataset, settings, code_version=code)
    feedback = dataset.feedback
    log(
        f"data {dataset.name}: {dataset.summary()['n_interactions']} (fingerprint {dataset.fingerprint[:12]}), "
        f"{feedback.kind if feedback else '?'} feedback ({feedback.reason if feedback else ''}), input key {key}"
    )
    existing = registry.find_by_input_key(key)
    if existing is not None and not force:
        log(f"version {existing.label} was trained from identical inputs: nothing to retrain")
        champ = registry.champion()
        snapshot = publishing.republish_champion(registry, store, settings, dataset=dataset)[0] if champ else None
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
        first = {"seconds.load_and_validate": seconds["load_and_validate"]}
        mlrun.log_metrics(registry, run_id, first | {"peak_rss_mb.load_and_validate": peaks["load_and_validate"]})
        night = _Night(settings, dataset, registry, store, run_id, key, code, existing, (seconds, peaks), run_step, log)
        return night.run()
    except BaseException:
        mlrun.end_run(registry, run_id, failed=True)
        raise


class _Night:
    """The night after the idempotency check, inside the open MLflow run (the caller ends it on failure)."""

    def __init__(
        self,
        settings: Settings,
        dataset: Dataset,
        registry: Registry,
        store: SnapshotStore,
        run_id: str,
        key: str,
        code: str,
        existing: Any,
        meters: tuple[dict[str, float], dict[str, float]],
        run_step: StepRunner,
        log: Log,
    ) -> None:
        self.settings, self.dataset, self.registry, self.store = settings, dataset, registry, store
        self.run_id, self.key, self.code, self.existing = run_id, key, code, existing
        (self.seconds, self.peaks), self.run_step, self.log = meters, run_step, log
        self.compute: dict[str, Any] = {"engine": settings.compute.engine, "partitions": 0, "ran_on": []}

    def step(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one step through the runner; its wall seconds and peak memory go to the summary and the MLflow run."""
        with metered(self.seconds, self.peaks, name):
            out = self.run_step(name, fn, *args, **kwargs)
        metrics = {f"seconds.{name}": self.seconds[name], f"peak_rss_mb.{name}": self.peaks[name]}
        mlrun.log_metrics(self.registry, self.run_id, metrics)
        return out

    def run(self) -> dict[str, Any]:
        settings, dataset, registry, cfg, log = (
            self.settings,
            self.dataset,
            self.registry,
            self.settings.nightly,
            self.log,
        )
        champ, champ_bundle = self.step("champion", champion_bundle, registry, cfg.work_dir)
        mlrun.log_params(registry, self.run_id, {"champion.before": champ.label if champ else "none"})
        split = self.step("split", steps.nightly_split, dataset, settings.evaluation, settings.run)
        init = champ_bundle.adapter_path if (champ_bundle is not None and cfg.warm_start) else None
        enc = self.step("fine_tune", fine_tune_encoder, split, dataset.items, settings, init)
        embeddings = self.step("embed", embed, dataset.items, settings, enc.adapter)
        head = self.step("collab_head", collab_head, split, embeddings, settings)
        if head is not None:
            embeddings = with_head(embeddings, head)
            r = head.result
            log(
                f"collaborative head ({r.objective}): {r.steps} steps ({r.stopped}), loss {r.initial_loss:.4f} -> "
                f"{r.final_loss:.4f}, {r.wall_seconds:.1f} s"
            )
        if enc.result:
            log(
                f"LoRA fine-tuning: {enc.result.get('steps')} steps, {enc.result.get('pairs_seen')} pairs, "
                f"stopped: {enc.result.get('stopped')}"
            )
        else:
            log("LoRA fine-tuning: off ([encoder] enabled_fine_tune; auto = on where a CUDA device is present)")
        meta = {
            "input_key": self.key,
            "data_fingerprint": dataset.fingerprint,
            "code_version": self.code,
            "warm_start_from": champ.label if (champ and init) else None,
            "fine_tune": enc.result,
            "collab_head": asdict(head.result) if head is not None else None,
        }
        # What training actually did (steps run, pairs seen, loss, why it stopped), next to the settings.
        fine_tune = {k: v for k, v in (enc.result or {}).items() if k != "history"} or "off"
        trained = mlrun.flatten("trained", {"fine_tune": fine_tune, "collab_head": meta["collab_head"] or "off"})
        mlrun.log_params(registry, self.run_id, trained)
        folder = self.key if self.existing is None else f"{self.key}-rerun-{datetime.now(UTC):%Y%m%dT%H%M%S}"
        bundle = self.step(
            "train_ranker",
            steps.train_version,
            split,
            dataset,
            settings.encoder,
            settings.ranker,
            settings.run,
            protocol=settings.evaluation.resolved_protocol,
            embeddings=embeddings,
            adapter=enc.adapter,
            head=head,
            out=cfg.work_dir / "bundles" / folder,
            extra_meta=meta,
            scale=settings.scale,
        )
        versions = {steps.CANDIDATE: bundle} | ({steps.CHAMPION: champ_bundle} if champ_bundle else {})
        report = self.step(
            "evaluate",
            steps.evaluate_bundles,
            dataset,
            split,
            versions,
            settings.evaluation,
            settings.run,
            baselines=cfg.baselines,
            progress=log,
            scale=settings.scale,
        )
        decision = steps.gate(report, cfg.gate, seed=settings.run.seed_for("gate"))
        log(f"gate: {'PROMOTE' if decision.promote else 'keep the champion'} ({decision.reason})")
        version = self.step("register", self._register, report, decision, bundle, split)
        # The champion after tonight: the candidate if promoted, else the current champion (its lists refreshed with
        # tonight's data). Lists are built before the alias moves; the alias moves before the atomic publish.
        serving, label = (bundle, version.label) if decision.promote else (champ_bundle, champ.label if champ else None)
        snapshot_id = None
        if serving is not None and label is not None:
            with open_engine(settings.compute) as engine:  # where the user partitions' lists are built
                lists, fallback, model = self.step(
                    "build_lists",
                    publishing.ranked_lists,
                    serving,
                    dataset,
                    settings.run,
                    k=cfg.serving_k,
                    work_dir=cfg.work_dir,
                    trending_days=settings.ranker.candidates.popular_window_days,
                    scale=settings.scale,
                    engine=engine,
                    partition_users=settings.compute.partition_users,
                )
                where = engine.where()
            self.compute = {"engine": engine.name, "partitions": len(where), "ran_on": sorted(set(where))}
            log(f"lists built in {len(where)} partitions on {', '.join(self.compute['ran_on']) or '-'}")
            if decision.promote:
                registry.set_alias(CHAMPION, version.version)
                log(f"promoted {version.label} to champion")
            reason = {
                "input_key": self.key,
                "run_id": self.run_id,
                "reason": "promoted" if decision.promote else "refresh",
            }
            snapshot = self.step(
                "publish",
                publishing.publish,
                self.store,
                lists,
                fallback,
                model_version=label,
                bundle=serving,
                model=model,
                dataset=dataset,
                work_dir=cfg.work_dir,
                meta=reason,
            )
            snapshot_id = snapshot.snapshot_id
        mlrun.log_json(registry, self.run_id, "timings.json", {"seconds": self.seconds, "peak_rss_mb": self.peaks})
        mlrun.end_run(registry, self.run_id)
        champion_now = registry.champion()
        return _summary(
            status="promoted" if decision.promote else "not_promoted",
            version=version.version,
            champion=champion_now.version if champion_now else None,
            gate=decision.to_dict(),
            run_id=self.run_id,
            tracking_uri=registry.uri,
            snapshot=snapshot_id,
            store=cfg.store_path,
            seconds=self.seconds,
            peak_rss_mb=self.peaks,
            compute=self.compute,
            metrics={m.name: m.metrics for m in report.models},
        )

    def _register(self, report: Any, decision: Any, bundle: Any, split: Any) -> Any:
        """Evaluation, gate, data summary and split into the run; the bundle registered as a version (challenger)."""
        registry, run_id, dataset = self.registry, self.run_id, self.dataset
        record(registry, run_id, report, decision, self.settings.nightly.work_dir / "runs" / run_id)
        mlrun.log_json(registry, run_id, "data_summary.json", dataset.summary())
        mlrun.log_json(registry, run_id, "split.json", {"params": split.params, "stats": split.stats})
        tags = {
            "recsys.input_key": self.key,
            "recsys.data_fingerprint": dataset.fingerprint,
            "recsys.code_version": self.code,
            "recsys.gate": "pass" if decision.promote else "fail",
            "recsys.gate_reason": decision.reason[:500],
            "recsys.bundle_digest": bundle.digest,
        }
        if self.existing is not None:
            tags["recsys.rerun_of"] = str(self.existing.version)
        version = mlrun.register_bundle(registry, run_id, bundle.path, tags=tags)
        registry.set_alias(CHALLENGER, version.version)
        return version
