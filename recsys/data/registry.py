"""Datasets by name, and a team's own data described by a small TOML spec."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from recsys.data.dataset import Dataset
from recsys.data.errors import DataValidationError
from recsys.data.loaders import load_amazon_scientific, load_files, load_movielens_100k, load_movielens_latest
from recsys.data.synthetic import generate_synthetic
from recsys.data.validation import ValidationPolicy

# (folder of the public datasets or None for the default, validation policy, quarantine folder) -> Dataset
Loader = Callable[[Path | None, ValidationPolicy | None, Path | None], Dataset]


def _under(root: Path | None, name: str) -> Path | None:
    return Path(root) / name if root is not None else None


DATASETS: dict[str, Loader] = {
    "synthetic": lambda root, policy, qdir: generate_synthetic(),
    "ml-100k": lambda root, policy, qdir: load_movielens_100k(
        _under(root, "ml-100k"), policy=policy, quarantine_dir=qdir
    ),
    "ml-100k+wiki": lambda root, policy, qdir: load_movielens_100k(
        _under(root, "ml-100k"), with_wiki=True, policy=policy, quarantine_dir=qdir
    ),
    "ml-latest-small": lambda root, policy, qdir: load_movielens_latest(
        _under(root, "ml-latest-small"), policy=policy, quarantine_dir=qdir
    ),
    "ml-latest-small+tmdb": lambda root, policy, qdir: load_movielens_latest(
        _under(root, "ml-latest-small"), with_tmdb=True, policy=policy, quarantine_dir=qdir
    ),
    "amazon-scientific": lambda root, policy, qdir: load_amazon_scientific(
        _under(root, "amazon-scientific"), policy=policy, quarantine_dir=qdir
    ),
}


class DatasetSpec(BaseModel, frozen=True, extra="forbid"):
    """A team's interaction log and catalog. Relative paths resolve against the spec file's folder.

    Example (spec.toml):
        name = "shop"
        interactions = "events.csv"
        items = "catalog.parquet"
        timestamp_unit = "iso"
        [columns]
        user_id = "customer"
        item_id = "sku"
        [policy]
        on_duplicate = "drop"
        [event_weights]  # optional: implicit feedback whose event types carry weights
        view = 1
        cart = 3
        purchase = 5
    """

    name: str | None = None
    interactions: Path
    items: Path
    columns: dict[str, str] = Field(default_factory=dict, description="canonical name -> column in the files")
    separator: str | None = None
    encoding: str = "utf-8"
    timestamp_unit: str = Field("s", pattern="^(s|ms|us|iso)$")
    list_separator: str = "|"
    policy: ValidationPolicy = Field(default_factory=ValidationPolicy)
    event_weights: dict[str, float] | None = Field(
        None, description="event_type -> weight: the rating of each event becomes its weight (implicit feedback)"
    )
    rating_range: tuple[float, float] | None = Field(
        None,
        description="[lowest, highest] rating of the scale, e.g. [1, 5]: ratings outside follow the policy's "
        "on_out_of_range; absent: the observed range is reported, not checked",
    )
    positive_threshold: float | None = Field(
        None,
        description="rating (or event weight) >= this is a positive; absent: every event with event_weights or "
        "without ratings, else 0.8 x the highest rating",
    )


def load_spec(path: Path) -> DatasetSpec:
    """Read and check a dataset spec; errors name the file and the bad key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DataValidationError(f"{path}: dataset spec not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise DataValidationError(f"{path}: not valid TOML ({exc})") from exc
    try:
        spec = DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise DataValidationError(f"{path}: invalid dataset spec: {problems}") from exc
    base = path.parent
    return spec.model_copy(
        update={"interactions": base / spec.interactions, "items": base / spec.items, "name": spec.name or path.stem}
    )


def load_dataset(
    name: str,
    *,
    data_dir: Path | None = None,
    policy: ValidationPolicy | None = None,
    quarantine_dir: Path | None = None,
) -> Dataset:
    """A dataset by registered name (see `DATASETS`; the public ones read from `data_dir`, default
    `default_data_dir()`) or by the path of a TOML spec."""
    if name in DATASETS:
        return DATASETS[name](data_dir, policy, quarantine_dir)
    if name.endswith(".toml"):
        spec = load_spec(Path(name))
        return load_files(
            spec.interactions,
            spec.items,
            mapping=spec.columns,
            separator=spec.separator,
            encoding=spec.encoding,
            timestamp_unit=spec.timestamp_unit,
            list_separator=spec.list_separator,
            name=spec.name,
            policy=policy or spec.policy,
            quarantine_dir=quarantine_dir,
            event_weights=spec.event_weights,
            positive_threshold=spec.positive_threshold,
            rating_range=spec.rating_range,
        )
    raise DataValidationError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)} or a spec .toml file")
