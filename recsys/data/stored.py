"""A validated dataset written to a folder and read back without validating again: how the night's steps hand the
data to each other (by path), so a step can run in another process or on another machine, and a failed night's
inputs stay on disk to look at.

The folder holds `interactions.parquet`, `items.parquet`, `quarantine.parquet`, `holdout.parquet` (when the data
ships a split) and `dataset.json` (name, feedback, validation report, fingerprint). Parquet keeps every column's type,
so the dataset read back has the same content and the same fingerprint (checked on read).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

import polars as pl

from recsys.data.dataset import Dataset, fingerprint_frames
from recsys.data.feedback import Feedback
from recsys.data.report import ValidationReport

FORMAT = 1
_FRAMES = ("interactions", "items", "quarantine")


@dataclass(frozen=True)
class DatasetRef:
    """A dataset written by `write_dataset`: its folder and the facts the night decides on without reading frames
    (name, fingerprint, feedback, whether it ships its own split, the summary it logs)."""

    folder: Path
    name: str
    fingerprint: str
    feedback: Feedback
    ships_split: bool
    summary: dict[str, object]

    def load(self) -> Dataset:
        """The dataset, read back from Parquet. The night wrote the folder itself minutes earlier and every step
        reads it, so the content is not hashed again each time (at 10M events that is seconds per read, the read
        itself a fraction of one); `read_dataset` checks it for a folder of unknown history."""
        return read_dataset(self.folder, verify=False)


def write_dataset(dataset: Dataset, folder: Path) -> DatasetRef:
    """Write `dataset` to `folder` (replaced atomically: a crash never leaves half a dataset there)."""
    folder = Path(folder)
    tmp = staging_folder(folder)
    for name in _FRAMES:
        getattr(dataset, name).write_parquet(tmp / f"{name}.parquet")
    if dataset.holdout is not None:
        dataset.holdout.write_parquet(tmp / "holdout.parquet")
    feedback = dataset.feedback
    assert feedback is not None  # set on construction
    summary = dataset.summary()
    meta = {
        "format": FORMAT,
        "name": dataset.name,
        "fingerprint": dataset.fingerprint,
        "feedback": feedback.to_dict(),
        "report": {f.name: getattr(dataset.report, f.name) for f in fields(ValidationReport)},
        "summary": summary,
    }
    (tmp / "dataset.json").write_text(json.dumps(meta, indent=1, default=str))
    commit_folder(tmp, folder)
    return DatasetRef(folder, dataset.name, dataset.fingerprint, feedback, dataset.holdout is not None, summary)


def read_ref(folder: Path) -> DatasetRef:
    """The facts of a dataset folder, without reading its frames."""
    meta = _meta(Path(folder))
    return DatasetRef(
        Path(folder),
        str(meta["name"]),
        str(meta["fingerprint"]),
        Feedback(**meta["feedback"]),
        (Path(folder) / "holdout.parquet").is_file(),
        meta["summary"],
    )


def read_dataset(folder: Path, *, verify: bool = True) -> Dataset:
    """The dataset in `folder` (written by `write_dataset`). Raises ValueError when a file is missing or, with
    `verify`, when the content no longer matches the fingerprint written with it."""
    folder = Path(folder)
    meta = _meta(folder)
    try:
        frames = {name: pl.read_parquet(folder / f"{name}.parquet") for name in _FRAMES}
    except OSError as exc:
        raise ValueError(f"{folder}: dataset files unreadable: {exc}") from exc
    holdout = folder / "holdout.parquet"
    report = dict(meta["report"])
    report["notes"] = tuple(report.get("notes") or ())
    dataset = Dataset(
        name=str(meta["name"]),
        interactions=frames["interactions"],
        items=frames["items"],
        report=ValidationReport(**report),
        quarantine=frames["quarantine"],
        feedback=Feedback(**meta["feedback"]),
        holdout=pl.read_parquet(holdout) if holdout.is_file() else None,
    )
    written = str(meta["fingerprint"])
    if verify:
        found = fingerprint_frames(dataset.interactions, dataset.items)
        if found != written:
            raise ValueError(f"{folder}: content does not match its fingerprint ({found[:12]} vs {written[:12]})")
    dataset.__dict__["fingerprint"] = written  # the cached property: known, not recomputed
    return dataset


def _meta(folder: Path) -> dict:
    return read_meta(folder / "dataset.json", FORMAT, what="a written dataset")


def staging_folder(folder: Path) -> Path:
    """An empty `<folder>.tmp` beside `folder`, to write into before `commit_folder`."""
    tmp = Path(folder).with_name(Path(folder).name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def commit_folder(tmp: Path, folder: Path) -> Path:
    """Replace `folder` by the staged `tmp` (a crash never leaves half a folder at `folder`)."""
    shutil.rmtree(folder, ignore_errors=True)
    Path(tmp).rename(folder)
    return Path(folder)


def read_meta(path: Path, fmt: int, *, what: str) -> dict:
    """A JSON metadata file of format `fmt`; ValueError naming the file when it is unreadable or another format."""
    try:
        meta = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not {what} ({exc})") from exc
    if meta.get("format") != fmt:
        raise ValueError(f"{path}: format {meta.get('format')!r}, this code reads format {fmt}")
    return meta
