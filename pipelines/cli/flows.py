"""`recsys run | registry | schedule`: the Prefect flows once, now; the model registry; deployments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pipelines.cli._common import (
    DatasetOpt,
    _bad_settings,
    _settings,
    _user_errors,
    app,
    console,
    err,
)

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
    summary: Annotated[
        Path | None,
        typer.Option(
            help="Also write the night's summary (status, versions, per-step seconds and peak "
            "memory, metrics) as JSON here"
        ),
    ] = None,
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
    if summary is not None:
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.write_text(json.dumps(out, indent=2, default=str))
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
        peaks = out.get("peak_rss_mb", {})
        console.print("  peak memory (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()))
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
    """Every registered version with its aliases, gate result and input key; then the recent nights (Completed,
    Failed, Crashed: a night killed mid-run shows as Crashed)."""
    from rich.table import Table

    from pipelines._guard import recent_nights
    from recsys.registry import Registry

    settings = _settings(config)
    registry = Registry(settings.tracking)
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
    nights = recent_nights(settings.nightly.work_dir)
    if nights:
        runs = Table(title=f"recent nights in {settings.nightly.work_dir}")
        for col in ("started", "ended", "state", "flow run", "reason"):
            runs.add_column(col)
        for night in nights:
            runs.add_row(*(str(night.get(k) or "") for k in ("started", "ended", "state", "flow_run_id", "reason")))
        console.print(runs)


@registry_app.command("rollback")
def registry_rollback(
    version: Annotated[int, typer.Argument(help="The version to make champion again")],
    republish: Annotated[bool, typer.Option(help="Publish that version's lists now")] = True,
    config: Annotated[Path | None, typer.Option(help="Settings TOML")] = None,
) -> None:
    """Point the champion alias at an earlier version and (by default) serve its lists again: the newest published
    snapshot of that version is re-activated instantly, or its lists are rebuilt on today's data."""
    from recsys.nightly.publishing import republish_champion, verified_bundle
    from recsys.registry import Registry
    from recsys.serving import open_store

    settings = _settings(config)
    registry = Registry(settings.tracking)
    with _user_errors():  # a damaged store is refused before the alias moves
        store = (
            open_store(settings.serving, default_path=settings.nightly.store_path, retention=settings.nightly.retention)
            if republish
            else None
        )
    try:
        before = registry.champion()
        registry.get(version)
        verified_bundle(registry, version, settings.nightly.work_dir)  # refused before the alias moves
        info = registry.rollback(version)
    except KeyError as exc:
        err.print("[red]error:[/red]", escape(str(exc.args[0])))
        raise typer.Exit(2) from exc
    except ValueError as exc:
        err.print("[red]error:[/red]", escape(f"{exc}; the champion stays {before.label if before else 'none'}"))
        raise typer.Exit(2) from exc
    console.print(f"champion: {before.label if before else 'none'} -> {info.label}")
    if store is not None:
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
