"""Shared pieces of the `recsys` command line: the typer app, consoles, data loading and error handling."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

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
    from recsys.config import public_data_dir
    from recsys.data import ValidationPolicy, load_dataset, load_files
    from recsys.data.validation import check_timestamp_unit

    check_timestamp_unit(timestamp_unit)  # refused whatever the source, never read as something else
    base = data.policy if data is not None else None
    pol: ValidationPolicy | None
    if policy:  # --policy flags override single keys of the settings' policy
        pol = ValidationPolicy(**((base.model_dump() if base else {}) | _parse_pairs(policy, "--policy")))
    else:
        pol = base  # None: a dataset spec's own [policy], else strict defaults
    if quarantine_dir is None and data is not None:
        quarantine_dir = data.quarantine_dir
    if interactions or items:
        if not (interactions and items):
            raise typer.BadParameter("give both --interactions and --items (or --dataset)")
        with _data_warnings():
            return load_files(
                interactions,
                items,
                mapping=_parse_pairs(mapping, "--map"),
                timestamp_unit=timestamp_unit,
                policy=pol,
                quarantine_dir=quarantine_dir,
            )
    name = dataset or (data.dataset if data is not None else None) or "synthetic"
    with _data_warnings():
        root = data.data_dir if data is not None else public_data_dir()
        return load_dataset(name, data_dir=root, policy=pol, quarantine_dir=quarantine_dir)


@contextmanager
def _data_warnings() -> Iterator[None]:
    """The loaders' DataWarnings (kept rows worth knowing about: repaired text, untitled items, blank lines) as
    yellow lines on stderr, not Python's warning format; other warnings pass through."""
    from recsys.data.errors import DataWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, DataWarning):
                    err.print("[yellow]warning:[/yellow]", escape(str(w.message)))
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad data, bad values or missing files become one red line and exit status 2 (no traceback)."""
    try:
        yield
    except (ValueError, OSError) as exc:  # DataValidationError is a ValueError; OSError: missing file, not a folder
        err.print("[red]error:[/red]", escape(_one_line(exc)))
        raise typer.Exit(2) from exc


def _one_line(exc: BaseException) -> str:
    """The message of `exc`; an OSError as `path: reason` (no errno)."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


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
