"""`recsys validate | evaluate | finetune | embed`: data checks, offline evaluation and the encoder stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pipelines.cli._common import (
    DatasetOpt,
    InteractionsOpt,
    ItemsOpt,
    MapOpt,
    PolicyOpt,
    QuarantineOpt,
    TsOpt,
    _bad_settings,
    _load,
    _parse_time,
    _settings,
    _user_errors,
    app,
    console,
    err,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from recsys.baselines import Recommender
    from recsys.config import Settings
    from recsys.evaluation.splits import ProtocolName


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
        "extra_ks": tuple(extra_k) or None,
        "cutoff": cutoff,
        "test_fraction": test_fraction,
        "models": tuple(m.strip() for m in models.split(",") if m.strip()) if models else None,
    }
    settings = _settings(config)
    if seed is not None:
        settings = settings.model_copy(update={"run": settings.run.model_copy(update={"seed": seed})})
    run = settings.run
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

            extra = _pipeline_models(names, settings, cfg.protocol, bar)
            report = run_evaluation(
                ds,
                protocol=cfg.protocol,
                models=[n for n in names if n not in extra],
                extra_models=extra,
                k=cfg.k,
                extra_ks=cfg.extra_ks,
                seed=run.seed_for("split"),
                ease_grid=cfg.ease_grid,
                protocol_params=cfg.protocol_params(),
                progress=step,
                scale=settings.scale,
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


def _pipeline_models(
    names: list[str], settings: Settings, protocol: str, bar: Progress
) -> dict[str, Callable[[], Recommender]]:
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

    run = settings.run
    seed = run.seed_for("encoder")
    embedder = TextEmbedder(
        settings.encoder,
        work_dir=run.work_dir,
        seed=seed,
        cache_dir=run.cache_dir,
        time_budget_s=run.fine_tune_time_budget_s,
        training_progress=training,
    )
    plain = settings.encoder.model_copy(
        update={"enabled_fine_tune": False, "head": settings.encoder.head.model_copy(update={"enabled": False})}
    )
    pretrained = TextEmbedder(plain, work_dir=run.work_dir, seed=seed, cache_dir=run.cache_dir)
    return pipeline_factories(
        wanted,
        embedder=embedder,
        cfg=settings.ranker,
        protocol=cast("ProtocolName", protocol),
        seed=run.seed_for("ranker"),
        pretrained=pretrained,
        scale=settings.scale,
    )


@app.command()
def finetune(
    dataset: DatasetOpt = None,
    out: Annotated[Path, typer.Option(help="Adapter folder to write")] = Path("results/adapter"),
    as_of: Annotated[str | None, typer.Option(help="Use only events before this time (ISO); default: all")] = None,
    init_adapter: Annotated[Path | None, typer.Option(help="Warm start from this adapter")] = None,
    time_budget: Annotated[float | None, typer.Option(help="Wall seconds; default from settings")] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of pair sampling, LoRA init and shuffling; default: [run] seeds")
    ] = None,
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
    seed = settings.run.seed_for("encoder") if seed is None else seed
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
                pairs,
                enc,
                out=out,
                seed=seed,
                init_adapter=init_adapter,
                progress=update,
                time_budget_s=settings.run.fine_tune_time_budget_s if time_budget is None else time_budget,
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
            emb = embed_items(item_text, encoder, cache_dir=settings.run.cache_dir, progress=advance)
    out.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {"item_id": emb.item_ids, "vector": emb.vectors, "model_version": [emb.model_version] * len(emb.item_ids)}
    ).write_parquet(out)
    console.print(
        f"{len(emb.item_ids)} items embedded by {emb.model_version} ({encoder.device}, {encoder.dtype}); "
        f"{emb.n_encoded} encoded now, {len(emb.item_ids) - emb.n_encoded} from the cache -> {out}"
    )


# -- nightly flow, registry, schedule ---------------------------------------------------------------------------
