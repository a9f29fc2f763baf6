"""The `recsys` command line: a typer shell over library calls, rendered with rich."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from recsys.data.errors import DataValidationError
from recsys.evaluation.render import render_report

app = typer.Typer(add_completion=False, no_args_is_help=True, help="recsys: LLM-enhanced recommender pipeline.")
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
):
    from recsys.data import ValidationPolicy, load_dataset, load_files

    pol = ValidationPolicy(**_parse_pairs(policy, "--policy")) if policy else None
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
    return load_dataset(dataset or "synthetic", policy=pol, quarantine_dir=quarantine_dir)


DatasetOpt = Annotated[
    str | None,
    typer.Option(
        help="Registered name (synthetic, ml-100k, ml-100k+wiki, ml-latest-small, ml-latest-small+tmdb) or a spec .toml"
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
    try:
        ds = _load(dataset, interactions, items, mapping, timestamp_unit, policy, quarantine_dir)
    except DataValidationError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print_json(json.dumps(ds.summary(), default=str))


@app.command()
def evaluate(
    dataset: DatasetOpt = None,
    protocol: Annotated[str | None, typer.Option(help="ms-stratified, temporal or leave-last-out")] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated: toppop,sar,itemknn,ease,als,bpr")] = None,
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

    from recsys.config import load_settings
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
    try:
        settings = load_settings(config)
        cfg = settings.evaluation.model_validate(
            {**settings.evaluation.model_dump(), **{f: v for f, v in flags.items() if v is not None}}
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        err.print(f"[red]error:[/red] invalid settings: {problems}")
        raise typer.Exit(2) from exc
    except FileNotFoundError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    dataset = dataset or (None if interactions else settings.data.dataset)
    names = list(cfg.models)
    try:
        ds = _load(dataset, interactions, items, mapping, timestamp_unit, policy, quarantine_dir)
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

            report = run_evaluation(
                ds,
                protocol=cfg.protocol,
                models=names,
                k=cfg.k,
                extra_ks=cfg.extra_ks,
                seed=cfg.seed,
                ease_grid=cfg.ease_grid,
                protocol_params=cfg.protocol_params(),
                progress=step,
            )
            bar.update(task, completed=n_steps, description="done")
    except (DataValidationError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(render_report(report))
    if out:
        report.write_json(out)
        console.print(f"report: {out}")
    if export_dir:
        paths = report.export_recommendations(export_dir)
        console.print(f"top-{max(report.ks)} lists: {', '.join(str(p) for p in paths)}")
