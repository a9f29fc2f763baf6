"""The `recsys` command line: a typer shell over library calls, rendered with rich."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from recsys.config import DataConfig

app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode=None, help="recsys: LLM-enhanced recommender pipeline."
)
# A wide table stays readable when piped to a file or CI log (rich would otherwise assume 80 columns).
console = Console() if sys.stdout.isatty() else Console(width=200)
err = Console(stderr=True)


def _parse_pairs(pairs: list[str], what: str) -> dict[str, str]:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise typer.BadParameter(f"{what} must look like key=value, got {p!r}")
        key, value = p.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _load(
    dataset: str | None,
    interactions: Path | None,
    items: Path | None,
    mapping: list[str],
    timestamp_unit: str,
    policy: list[str],
    quarantine_dir: Path | None,
    data: DataConfig | None = None,
):
    """The dataset the flags name, else the settings' [data] (its dataset, policy and quarantine folder); flags win,
    each --policy flag overriding one key of the settings' policy."""
    from recsys.data import ValidationPolicy, load_dataset, load_files

    base = data.policy if data is not None else None
    if policy:  # --policy flags override single keys of the settings' policy
        pol = ValidationPolicy(**((base.model_dump() if base else {}) | _parse_pairs(policy, "--policy")))
    else:
        pol = base  # None: a dataset spec's own [policy], else strict defaults
    if quarantine_dir is None and data is not None:
        quarantine_dir = data.quarantine_dir
    if interactions or items:
        if not (interactions and items):
            raise typer.BadParameter("give both --interactions and --items (or --dataset)")
        return load_files(
            interactions,
            items,
            mapping=_parse_pairs(mapping, "--map"),
            timestamp_unit=timestamp_unit,
            policy=pol,
            quarantine_dir=quarantine_dir,
        )
    name = dataset or (data.dataset if data is not None else None) or "synthetic"
    return load_dataset(name, policy=pol, quarantine_dir=quarantine_dir)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad data, bad values or missing files become one red line and exit status 2 (no traceback)."""
    try:
        yield
    except (ValueError, FileNotFoundError) as exc:  # DataValidationError is a ValueError
        err.print("[red]error:[/red]", escape(str(exc)))
        raise typer.Exit(2) from exc


def _parse_time(value: str, option: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not an ISO date/time (e.g. 2016-03-22 or 2016-03-22T08:26:11)", param_hint=option
        ) from exc


def _bad_settings(exc: Exception) -> NoReturn:
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())  # type: ignore[attr-defined]
    err.print("[red]error:[/red] invalid settings:", escape(problems))
    raise typer.Exit(2) from exc


def _settings(config: Path | None):
    """Settings from the TOML file and RECSYS_* env vars, with one-line errors."""
    from pydantic import ValidationError

    from recsys.config import load_settings

    try:
        return load_settings(config)
    except ValidationError as exc:
        _bad_settings(exc)
    except FileNotFoundError as exc:
        err.print("[red]error:[/red]", escape(str(exc)))
        raise typer.Exit(2) from exc


DatasetOpt = Annotated[
    str | None,
    typer.Option(
        help="Registered name (synthetic, ml-100k, ml-100k+wiki, ml-latest-small, ml-latest-small+tmdb, "
        "amazon-scientific) or a spec .toml"
    ),
]
InteractionsOpt = Annotated[Path | None, typer.Option(help="Your interaction log (CSV, TSV or Parquet)")]
ItemsOpt = Annotated[Path | None, typer.Option(help="Your item catalog (CSV, TSV or Parquet)")]
MapOpt = Annotated[list[str], typer.Option("--map", help="canonical=file_column, e.g. --map user_id=customer")]
TsOpt = Annotated[str, typer.Option(help="Timestamp unit of your files: s, ms, us or iso")]
PolicyOpt = Annotated[list[str], typer.Option("--policy", help="e.g. --policy on_duplicate=drop (ValidationPolicy)")]
QuarantineOpt = Annotated[Path | None, typer.Option(help="Folder for quarantine.parquet (rows not kept)")]


@app.command()
def validate(
    dataset: DatasetOpt = None,
    interactions: InteractionsOpt = None,
    items: ItemsOpt = None,
    mapping: MapOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    timestamp_unit: TsOpt = "s",
    policy: PolicyOpt = [],  # noqa: B006
    quarantine_dir: QuarantineOpt = None,
) -> None:
    """Load and validate a dataset; print its summary and validation report as JSON."""
    with _user_errors():
        ds = _load(dataset, interactions, items, mapping, timestamp_unit, policy, quarantine_dir)
    console.print_json(json.dumps(ds.summary(), default=str))


@app.command()
def evaluate(
    dataset: DatasetOpt = None,
    protocol: Annotated[
        str | None,
        typer.Option(
            help="ms-stratified, temporal, leave-last-out, fixed (shipped split), cold-items, or auto (default: fixed "
            "when the data ships a split, else temporal)"
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: toppop, sar, itemknn, ease, ease-lowpass, lowpass, seqnb, als, bpr, text, "
            "text-pretrained, pipeline, pipeline-no-text"
        ),
    ] = None,
    k: Annotated[int | None, typer.Option(help="Primary cut-off K")] = None,
    extra_k: Annotated[list[int], typer.Option("--extra-k", help="Further cut-offs, e.g. --extra-k 50")] = [],  # noqa: B006
    seed: Annotated[int | None, typer.Option(help="Seed of the split, the models and the bootstrap")] = None,
    cutoff: Annotated[str | None, typer.Option(help="temporal: global cutoff (ISO date/time)")] = None,
    test_fraction: Annotated[float | None, typer.Option(help="temporal: share of events after the cutoff")] = None,
    config: Annotated[Path | None, typer.Option(help="Settings TOML ([data], [evaluation]); flags override")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the report as JSON here")] = None,
    export_dir: Annotated[Path | None, typer.Option(help="Write each model's top-K lists as Parquet here")] = None,
    interactions: InteractionsOpt = None,
    items: ItemsOpt = None,
    mapping: MapOpt = [],  # noqa: B006
    timestamp_unit: TsOpt = "s",
    policy: PolicyOpt = [],  # noqa: B006
    quarantine_dir: QuarantineOpt = None,
) -> None:
    """Evaluate baselines side by side on a fixed protocol; print a table, optionally write JSON and top-K lists."""
    from pydantic import ValidationError

    from recsys.config import resolve_feedback, resolve_protocol
    from recsys.evaluation import evaluate as run_evaluation

    flags = {
        "protocol": protocol,
        "k": k,
        "seed": seed,
        "extra_ks": tuple(extra_k) or None,
        "cutoff": cutoff,
        "test_fraction": test_fraction,
        "models": tuple(m.strip() for m in models.split(",") if m.strip()) if models else None,
    }
    settings = _settings(config)
    try:
        cfg = settings.evaluation.model_validate(
            {**settings.evaluation.model_dump(), **{f: v for f, v in flags.items() if v is not None}}
        )
    except ValidationError as exc:
        _bad_settings(exc)
    dataset = dataset or (None if interactions else settings.data.dataset)
    names = list(cfg.models)
    from recsys.baselines import BASELINES
    from recsys.ranker import PIPELINE_MODELS, TEXT_MODELS

    known = [*BASELINES, *TEXT_MODELS, *PIPELINE_MODELS]
    unknown = [n for n in names if n not in known]
    if unknown:  # before any data is read or model trained
        err.print("[red]error:[/red]", escape(f"unknown model(s) {', '.join(unknown)}; available: {', '.join(known)}"))
        raise typer.Exit(2)
    with _user_errors():
        ds = _load(dataset, interactions, items, mapping, timestamp_unit, policy, quarantine_dir, settings.data)
        settings = resolve_feedback(settings, ds)  # "auto" thresholds: the dataset's explicit/implicit feedback
        cfg = cfg.model_copy(update={"protocol": resolve_protocol(cfg.protocol, ds)})  # auto: the shipped split
        n_steps = 2 * len(names) + ("ease" in names)
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        ) as bar:
            task = bar.add_task(f"evaluating on {ds.name}", total=n_steps)

            def step(msg: str) -> None:
                bar.update(task, description=msg, advance=1)

            extra = _pipeline_models(names, settings, cfg.protocol, cfg.seed, bar)
            report = run_evaluation(
                ds,
                protocol=cfg.protocol,
                models=[n for n in names if n not in extra],
                extra_models=extra,
                k=cfg.k,
                extra_ks=cfg.extra_ks,
                seed=cfg.seed,
                ease_grid=cfg.ease_grid,
                protocol_params=cfg.protocol_params(),
                progress=step,
            )
            bar.update(task, completed=n_steps, description="done")
    from recsys.evaluation.render import render_report

    for line in ds.report.summary_lines():
        console.print(f"data: {escape(line)}", soft_wrap=True)
    console.print(render_report(report, width=console.width))
    if out:
        report.write_json(out)
        console.print(f"report: {out}")
    if export_dir:
        paths = report.export_recommendations(export_dir)
        console.print(f"top-{max(report.ks)} lists: {', '.join(str(p) for p in paths)}")


def _pipeline_models(names: list[str], settings, protocol: str, seed: int, bar: Progress) -> dict:
    """Factories of the full pipeline (and its no-text ablation) named in `names`, sharing one fine-tuning whose
    progress shows as a task of `bar`."""
    from recsys.encoder import FineTuneStatus, TextEmbedder
    from recsys.encoder.stage import fine_tune_enabled
    from recsys.ranker import PIPELINE_MODELS, TEXT_MODELS, pipeline_factories

    wanted = [n for n in names if n in PIPELINE_MODELS or n in TEXT_MODELS]
    if not wanted:
        return {}
    task = bar.add_task("fine-tuning the encoder", total=None, visible=fine_tune_enabled(settings.encoder))

    def training(status: FineTuneStatus) -> None:
        bar.update(
            task,
            completed=status.step,
            total=status.total_steps,
            description=f"fine-tuning: loss {status.loss:.3f}, {status.pairs_per_second:.1f} pairs/s",
        )

    embedder = TextEmbedder(settings.encoder, work_dir=Path("results/pipeline"), seed=seed, training_progress=training)
    plain = settings.encoder.model_copy(
        update={"enabled_fine_tune": False, "head": settings.encoder.head.model_copy(update={"enabled": False})}
    )
    pretrained = TextEmbedder(plain, work_dir=Path("results/pipeline"), seed=seed)
    return pipeline_factories(
        wanted, embedder=embedder, cfg=settings.ranker, protocol=protocol, seed=seed, pretrained=pretrained
    )


@app.command()
def finetune(
    dataset: DatasetOpt = None,
    out: Annotated[Path, typer.Option(help="Adapter folder to write")] = Path("results/adapter"),
    as_of: Annotated[str | None, typer.Option(help="Use only events before this time (ISO); default: all")] = None,
    init_adapter: Annotated[Path | None, typer.Option(help="Warm start from this adapter")] = None,
    time_budget: Annotated[float | None, typer.Option(help="Wall seconds; default from settings")] = None,
    seed: Annotated[int, typer.Option(help="Seed of pair sampling, LoRA init and shuffling")] = 42,
    config: Annotated[Path | None, typer.Option(help="Settings TOML ([encoder.*] sections)")] = None,
    interactions: InteractionsOpt = None,
    items: ItemsOpt = None,
    mapping: MapOpt = [],  # noqa: B006
    timestamp_unit: TsOpt = "s",
    policy: PolicyOpt = [],  # noqa: B006
    quarantine_dir: QuarantineOpt = None,
) -> None:
    """Fine-tune the text encoder with LoRA on (earlier liked item -> next liked item) pairs; write the adapter."""
    from recsys.config import resolve_feedback
    from recsys.data import after_last_event
    from recsys.encoder import build_item_text, build_pairs
    from recsys.encoder.stage import tune_pairs
    from recsys.progress import training_bar

    settings = _settings(config)
    with _user_errors():
        ds = _load(dataset, interactions, items, mapping, timestamp_unit, policy, quarantine_dir, settings.data)
        enc = resolve_feedback(settings, ds).encoder
        cutoff = _parse_time(as_of, "--as-of") if as_of else after_last_event(ds.interactions)
        pairs = build_pairs(
            ds.interactions, build_item_text(ds.items, enc.text), as_of=cutoff, cfg=enc.pairs, seed=seed
        )
        console.print(f"pairs before {cutoff}: {pairs.stats['train_pairs']} train, {pairs.stats['valid_pairs']} valid")
        with training_bar("fine-tuning", console=err) as update:
            res = tune_pairs(
                pairs, enc, out=out, seed=seed, init_adapter=init_adapter, progress=update, time_budget_s=time_budget
            )
    console.print(
        f"adapter: {res.adapter_path} | {res.steps} steps, {res.pairs_seen} pairs, {res.pairs_per_second} pairs/s "
        f"on {res.device} ({res.dtype}) | stopped: {res.stopped} | validation loss {res.initial_val_loss} -> "
        f"{res.best_val_loss} (best step {res.best_step})"
    )


@app.command()
def embed(
    dataset: DatasetOpt = None,
    out: Annotated[Path, typer.Option(help="Parquet file: item_id, vector, model_version")] = Path(
        "results/item_embeddings.parquet"
    ),
    adapter: Annotated[Path | None, typer.Option(help="LoRA adapter folder (default: pretrained encoder)")] = None,
    config: Annotated[Path | None, typer.Option(help="Settings TOML ([encoder.*] sections)")] = None,
    interactions: InteractionsOpt = None,
    items: ItemsOpt = None,
    mapping: MapOpt = [],  # noqa: B006
    timestamp_unit: TsOpt = "s",
    policy: PolicyOpt = [],  # noqa: B006
    quarantine_dir: QuarantineOpt = None,
) -> None:
    """Embed every item's text (only new or changed texts are encoded; the rest comes from the cache)."""
    import polars as pl

    from recsys.encoder import TextEncoder, build_item_text, embed_items
    from recsys.progress import count_bar

    settings = _settings(config)
    enc = settings.encoder
    model_cfg = enc.model.model_copy(update={"adapter_path": str(adapter)}) if adapter else enc.model
    with _user_errors():
        ds = _load(dataset, interactions, items, mapping, timestamp_unit, policy, quarantine_dir, settings.data)
        item_text = build_item_text(ds.items, enc.text)
        encoder = TextEncoder(model_cfg)
        with count_bar("embedding", item_text.height, console=err) as advance:
            emb = embed_items(item_text, encoder, cache_dir=enc.cache_dir, progress=advance)
    out.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {"item_id": emb.item_ids, "vector": emb.vectors, "model_version": [emb.model_version] * len(emb.item_ids)}
    ).write_parquet(out)
    console.print(
        f"{len(emb.item_ids)} items embedded by {emb.model_version} ({encoder.device}, {encoder.dtype}); "
        f"{emb.n_encoded} encoded now, {len(emb.item_ids) - emb.n_encoded} from the cache -> {out}"
    )


# -- nightly flow, registry, schedule ---------------------------------------------------------------------------
run_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Run a Prefect flow once, now.")
registry_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Registered versions: list, roll the champion back."
)
app.add_typer(run_app, name="run")
app.add_typer(registry_app, name="registry")


def _flow_env() -> None:
    from recsys.config import local_run_environment

    local_run_environment()


def _overrides(dataset: str | None) -> dict:
    return {"data": {"dataset": dataset}} if dataset else {}


@run_app.command("nightly")
def run_nightly(
    config: Annotated[Path | None, typer.Option(help="Settings TOML")] = None,
    dataset: Annotated[str | None, typer.Option(help="Override [data] dataset")] = None,
    force: Annotated[bool, typer.Option(help="Train and register even when identical inputs have a version")] = False,
) -> None:
    """The nightly flow once, now: train, evaluate against the champion, register, gate, publish.

    Tracks to MLFLOW_TRACKING_URI when set (else the sqlite store under mlflow/)."""
    _flow_env()
    from pydantic import ValidationError

    from pipelines.nightly import nightly

    if config is not None and not config.is_file():
        err.print("[red]error:[/red]", escape(f"{config}: settings file not found"))
        raise typer.Exit(2)
    with _user_errors():
        try:
            out = nightly(config_path=str(config) if config else None, force=force, overrides=_overrides(dataset))
        except ValidationError as exc:
            _bad_settings(exc)
    _print_nightly(out, config)


def _print_nightly(out: dict, config: Path | None) -> None:
    from rich.table import Table

    from recsys.config import load_settings
    from recsys.serving import open_store

    settings = load_settings(config)
    status = out["status"]
    console.print(f"[bold]nightly: {status}[/bold] (version {out.get('version')})")
    if status == "unchanged":
        console.print("  identical inputs (data, settings, code) already produced this version; use --force to retrain")
    else:
        gate = out["gate"]
        console.print(f"  gate: {'pass' if gate['promote'] else 'fail'}: {gate['reason']}")
        table = Table(title="evaluation on the nightly split", show_lines=False)
        for col in ("model", "ndcg@10", "recall@10", "recall@50", "coverage@10"):
            table.add_column(col, justify="right" if col != "model" else "left")
        for name, m in out["metrics"].items():
            table.add_row(
                name, *(f"{m.get(c, float('nan')):.4f}" for c in ("ndcg@10", "recall@10", "recall@50", "coverage@10"))
            )
        console.print(table)
        console.print(f"  MLflow run: {out['run_id']} in {out['tracking_uri']}")
        console.print("  steps (s): " + ", ".join(f"{k} {v:.1f}" for k, v in out["seconds"].items()))
    champ = out.get("champion", out.get("version"))
    console.print(f"  champion: {settings.tracking.model_name}/{champ}")
    store = open_store(settings.serving, default_path=settings.nightly.store_path)
    cur = store.current()
    if cur is not None:
        console.print(
            f"  published lists: {settings.nightly.store_path} snapshot {cur.snapshot_id} "
            f"({cur.n_users} users, top-{cur.k}, {cur.model_version})"
        )
    console.print(
        f"  browse: MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow server --backend-store-uri "
        f"{settings.tracking.resolved_uri()} --host 127.0.0.1 --port 5000 --workers 1"
    )


@run_app.command("evaluate")
def run_evaluate(
    version: Annotated[list[str], typer.Option("--version", help="Version number or alias; repeat to compare")] = [],  # noqa: B006
    dataset: DatasetOpt = None,
    protocol: Annotated[
        str | None, typer.Option(help="temporal, ms-stratified, leave-last-out, fixed (shipped split) or cold-items")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Settings TOML")] = None,
) -> None:
    """Evaluate registered versions side by side (default: the champion) as a Prefect flow; print the table."""
    from recsys.registry import Registry

    registry = Registry(_settings(config).tracking)
    try:  # check the versions before starting a flow: one line, exit 2
        for ref in version or ["champion"]:
            registry.resolve(ref)
    except KeyError as exc:
        err.print("[red]error:[/red]", escape(str(exc.args[0])))
        raise typer.Exit(2) from exc
    _flow_env()
    from pipelines.evaluate import evaluate_versions

    with _user_errors():
        try:
            out = evaluate_versions(
                versions=version or None,
                dataset=dataset,
                protocol=protocol,
                config_path=str(config) if config else None,
            )
        except KeyError as exc:
            err.print("[red]error:[/red]", escape(str(exc.args[0])))
            raise typer.Exit(2) from exc
    console.print(out["markdown"])
    console.print(f"MLflow run: {out['run_id']}")


@registry_app.command("list")
def registry_list(config: Annotated[Path | None, typer.Option(help="Settings TOML")] = None) -> None:
    """Every registered version with its aliases, gate result and input key."""
    from rich.table import Table

    from recsys.registry import Registry

    registry = Registry(_settings(config).tracking)
    table = Table(title=f"{registry.cfg.model_name} in {registry.uri}")
    for col in ("version", "aliases", "gate", "input key", "run"):
        table.add_column(col)
    for v in registry.versions():
        table.add_row(
            str(v.version),
            ", ".join(v.aliases),
            v.tags.get("recsys.gate", ""),
            v.tags.get("recsys.input_key", ""),
            v.run_id or "",
        )
    console.print(table)


@registry_app.command("rollback")
def registry_rollback(
    version: Annotated[int, typer.Argument(help="The version to make champion again")],
    republish: Annotated[bool, typer.Option(help="Publish that version's lists now")] = True,
    config: Annotated[Path | None, typer.Option(help="Settings TOML")] = None,
) -> None:
    """Point the champion alias at an earlier version and (by default) serve its lists again: the newest published
    snapshot of that version is re-activated instantly, or its lists are rebuilt on today's data."""
    from recsys.nightly import republish_champion
    from recsys.registry import Registry
    from recsys.serving import open_store

    settings = _settings(config)
    registry = Registry(settings.tracking)
    try:
        before = registry.champion()
        info = registry.rollback(version)
    except KeyError as exc:
        err.print("[red]error:[/red]", escape(str(exc.args[0])))
        raise typer.Exit(2) from exc
    console.print(f"champion: {before.label if before else 'none'} -> {info.label}")
    if republish:
        store = open_store(
            settings.serving, default_path=settings.nightly.store_path, retention=settings.nightly.retention
        )
        with _user_errors():
            snap, how = republish_champion(registry, store, settings)
        console.print(f"published lists: snapshot {snap.snapshot_id} ({how})")


@app.command()
def schedule(
    config: Annotated[str | None, typer.Option(help="Settings TOML passed to every scheduled run")] = None,
    cron: Annotated[str | None, typer.Option(help="Cron of the nightly deployment (default [nightly] cron)")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone (default [nightly] timezone)")] = None,
) -> None:
    """Register the `nightly` (cron) and `evaluate` (on demand) deployments with the Prefect server at
    PREFECT_API_URL and serve them from this process until stopped (Ctrl-C)."""
    _flow_env()
    from prefect import serve

    from pipelines.deploy import build_deployments

    settings = _settings(Path(config) if config else None)
    deployments = build_deployments(
        settings, config_path=config, cron=cron or settings.nightly.cron, timezone=timezone or settings.nightly.timezone
    )
    serve(*deployments)


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option(help="Settings TOML ([serving] section)")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default [serving] host, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default [serving] port, 8000)")] = None,
) -> None:
    """The HTTP service: published lists, on-demand re-ranking, health, metrics (OpenAPI at /docs)."""
    import uvicorn

    from recsys.serving import RankingService, open_store
    from recsys.serving.app import create_app

    settings = _settings(config)
    cfg = settings.serving.model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v})
    store = open_store(cfg, default_path=settings.nightly.store_path, retention=settings.nightly.retention)
    service = RankingService(store, cfg)
    app_ = create_app(service)
    err.print(f"serving {store} on http://{cfg.host}:{cfg.port} (OpenAPI: /docs, /openapi.json)")
    uvicorn.run(app_, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)
