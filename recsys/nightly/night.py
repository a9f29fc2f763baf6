"""One night, in order, with one owner: the idempotency check, the MLflow run that covers the night, every step and
its timing, the registry's aliases and the atomic publish. `pipelines/nightly.py` only decides how each step runs
(as a Prefect task with its retries) through `run_step`; run locally, the steps are plain calls.

Semantics are in `recsys.nightly.steps`' module docstring.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from recsys.compute import Engine, open_engine
from recsys.config import Settings, resolve_feedback
from recsys.data.stored import DatasetRef
from recsys.evaluation.stored import read_report, report_metrics, split_facts
from recsys.nightly import publishing, steps, tasks
from recsys.nightly.metering import metered
from recsys.registry import CHALLENGER, CHAMPION, GateDecision, Registry
from recsys.registry import runs as mlrun
from recsys.registry.bundle import bundle_digest
from recsys.registry.tracking import VersionInfo
from recsys.serving import SnapshotStore, open_store

T = TypeVar("T")
Log = Callable[[str], None]


class StepRunner(Protocol):
    """Runs one named step of the night: `run_step(name, fn, *args, **kwargs)` returns `fn(*args, **kwargs)`."""

    def __call__(self, name: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...


def call_directly(name: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """The plain runner: each step is a function call."""
    return fn(*args, **kwargs)


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
    summary (status, versions, gate, run id, snapshot, per-step seconds, metrics).

    Steps hand each other paths (`recsys.nightly.tasks`): the night's folder under `work_dir/nights/` holds the
    validated data, the split, the embeddings and the report; it is removed when the night ends well and kept (a
    day) when it fails."""
    cfg = settings.nightly
    seconds: dict[str, float] = {}
    peaks: dict[str, float] = {}  # each step's peak resident memory, MiB
    registry = Registry(settings.tracking)
    store = open_store(settings.serving, default_path=cfg.store_path, retention=cfg.retention)
    folder = tasks.night_folder(cfg.work_dir)
    with metered(seconds, peaks, "load_and_validate"):
        data = run_step("load_and_validate", tasks.load_and_validate, settings.data, folder / "data")
    settings = resolve_feedback(settings, data)  # "auto" thresholds: the data's explicit/implicit feedback
    code = steps.code_version()
    key = steps.input_key(data, settings, code_version=code)
    feedback = data.feedback
    log(
        f"data {data.name}: {data.summary['n_interactions']} (fingerprint {data.fingerprint[:12]}), "
        f"{feedback.kind} feedback ({feedback.reason}), input key {key}"
    )
    existing = registry.find_by_input_key(key)
    if existing is not None and not force:
        log(f"version {existing.label} was trained from identical inputs: nothing to retrain")
        champ = registry.champion()
        snapshot = publishing.republish_champion(registry, store, settings, dataset=data)[0] if champ else None
        shutil.rmtree(folder, ignore_errors=True)
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
            "recsys.data_fingerprint": data.fingerprint,
            "mlflow.source.git.commit": code,
            "recsys.dataset": data.name,
            "recsys.night_folder": str(folder),
        },
    )
    try:
        params = mlrun.flatten(
            "", settings.model_dump(mode="json", include={"data", "evaluation", "encoder", "ranker", "nightly"})
        )
        params |= {"data.fingerprint": data.fingerprint, "code.version": code, "input_key": key}
        mlrun.log_params(registry, run_id, params)
        first = {"seconds.load_and_validate": seconds["load_and_validate"]}
        mlrun.log_metrics(registry, run_id, first | {"peak_rss_mb.load_and_validate": peaks["load_and_validate"]})
        night = _Night(settings, data, registry, store, run_id, key, code, existing, (seconds, peaks), run_step, log)
        summary = night.run(folder)
    except BaseException:
        mlrun.end_run(registry, run_id, failed=True)
        log(f"the night's inputs and outputs so far are kept in {folder} (removed after a day)")
        raise
    shutil.rmtree(folder, ignore_errors=True)
    return summary


class _Night:
    """The night after the idempotency check, inside the open MLflow run (the caller ends it on failure)."""

    def __init__(
        self,
        settings: Settings,
        data: DatasetRef,
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
        self.settings, self.data, self.registry, self.store = settings, data, registry, store
        self.run_id, self.key, self.code, self.existing = run_id, key, code, existing
        (self.seconds, self.peaks), self.run_step, self.log = meters, run_step, log
        self.compute: dict[str, Any] = {
            "engine": settings.compute.engine,
            "partitions": 0,
            "ran_on": [],
            "embed_shards": 0,
            "embed_ran_on": [],
        }

    def step(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one step through the runner; its wall seconds and peak memory go to the summary and the MLflow run."""
        with metered(self.seconds, self.peaks, name):
            out = self.run_step(name, fn, *args, **kwargs)
        metrics = {f"seconds.{name}": self.seconds[name], f"peak_rss_mb.{name}": self.peaks[name]}
        mlrun.log_metrics(self.registry, self.run_id, metrics)
        return out

    def run(self, folder: Path) -> dict[str, Any]:
        # one engine for the night (a LocalCluster, when asked for, starts once): item shards, then list partitions
        with open_engine(self.settings.compute) as engine:
            return self._run(folder, engine)

    def _run(self, folder: Path, engine: Engine) -> dict[str, Any]:
        settings, data, registry, cfg, log = self.settings, self.data, self.registry, self.settings.nightly, self.log
        champ = self.step("champion", tasks.champion, registry, cfg.work_dir)
        mlrun.log_params(registry, self.run_id, {"champion.before": champ.info.label if champ else "none"})
        split = self.step("split", tasks.split, data, settings, folder / "split")
        init = champ.adapter if (champ is not None and cfg.warm_start) else None
        enc = self.step("fine_tune", tasks.fine_tune, split, data, settings, init)
        embeddings = self.step(
            "embed", tasks.embed, data, settings, enc.adapter, folder / "embeddings.parquet", engine=engine
        )
        shards = engine.where()  # the night's first mapped step: empty when the texts were encoded here
        self.compute |= {"embed_shards": len(shards), "embed_ran_on": sorted(set(shards))}
        if shards:
            log(f"item texts embedded in {len(shards)} shards on {', '.join(self.compute['embed_ran_on'])}")
        head = self.step("collab_head", tasks.collab_head, split, embeddings, settings)
        if head is not None:
            r = head.result
            log(
                f"collaborative head ({r['objective']}): {r['steps']} steps ({r['stopped']}), loss "
                f"{r['initial_loss']:.4f} -> {r['final_loss']:.4f}, {r['wall_seconds']:.1f} s"
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
            "data_fingerprint": data.fingerprint,
            "code_version": self.code,
            "warm_start_from": champ.info.label if (champ and init) else None,
            "fine_tune": enc.result,
            "collab_head": head.result if head is not None else None,
        }
        # What training actually did (steps run, pairs seen, loss, why it stopped), next to the settings.
        fine_tune = {k: v for k, v in (enc.result or {}).items() if k != "history"} or "off"
        trained = mlrun.flatten("trained", {"fine_tune": fine_tune, "collab_head": meta["collab_head"] or "off"})
        mlrun.log_params(registry, self.run_id, trained)
        name = self.key if self.existing is None else f"{self.key}-rerun-{datetime.now(UTC):%Y%m%dT%H%M%S}"
        bundle = self.step(
            "train_ranker",
            tasks.train_ranker,
            split,
            data,
            embeddings,
            head,
            enc.adapter,
            settings,
            out=cfg.work_dir / "bundles" / name,
            meta=meta,
        )
        versions = {steps.CANDIDATE: bundle} | ({steps.CHAMPION: champ.bundle} if champ else {})
        report = self.step("evaluate", tasks.evaluate, data, split, versions, settings, out=folder / "report", log=log)
        decision = self.step("gate", tasks.gate, report, cfg.gate, seed=settings.run.seed_for("gate"))
        log(f"gate: {'PROMOTE' if decision.promote else 'keep the champion'} ({decision.reason})")
        version = self.step("register", self._register, report, decision, bundle, split)
        # The champion after tonight: the candidate if promoted, else the current champion (its lists refreshed with
        # tonight's data). Lists are built before the alias moves; the alias moves before the atomic publish.
        serving: Path | None
        label: str | None
        if decision.promote:
            serving, label = bundle, version.label
        else:
            serving, label = (champ.bundle, champ.info.label) if champ else (None, None)
        snapshot_id = None
        if serving is not None and label is not None:
            built = self.step("build_lists", tasks.build_lists, serving, data, settings, engine=engine)
            where = engine.where()
            self.compute |= {"engine": engine.name, "partitions": len(where), "ran_on": sorted(set(where))}
            log(f"lists built in {len(where)} partitions on {', '.join(self.compute['ran_on']) or '-'}")
            if decision.promote:
                registry.set_alias(CHAMPION, version.version)
                log(f"promoted {version.label} to champion")
            reason = {
                "input_key": self.key,
                "run_id": self.run_id,
                "reason": "promoted" if decision.promote else "refresh",
            }
            snapshot = self.step("publish", tasks.publish, self.store, built, model_version=label, meta=reason)
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
            metrics=report_metrics(report),
        )

    def _register(self, report: Path, decision: GateDecision, bundle: Path, split: Path) -> VersionInfo:
        """Evaluation, gate, data summary and split into the run; the bundle registered as a version (challenger)."""
        registry, run_id, data = self.registry, self.run_id, self.data
        record(registry, run_id, read_report(report), decision, self.settings.nightly.work_dir / "runs" / run_id)
        mlrun.log_json(registry, run_id, "data_summary.json", data.summary)
        facts = split_facts(split)
        mlrun.log_json(registry, run_id, "split.json", {"params": facts["params"], "stats": facts["stats"]})
        tags = {
            "recsys.input_key": self.key,
            "recsys.data_fingerprint": data.fingerprint,
            "recsys.code_version": self.code,
            "recsys.gate": "pass" if decision.promote else "fail",
            "recsys.gate_reason": decision.reason[:500],
            "recsys.bundle_digest": bundle_digest(bundle),
        }
        if self.existing is not None:
            tags["recsys.rerun_of"] = str(self.existing.version)
        version = mlrun.register_bundle(registry, run_id, bundle, tags=tags)
        registry.set_alias(CHALLENGER, version.version)
        return version
