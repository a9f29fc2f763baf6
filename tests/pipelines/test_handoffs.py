"""The night's steps hand each other paths, ids and small records, never frames or fitted models: what a step
runner (a Prefect task here) receives and returns is checked for every step of a real night."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from recsys.config import load_settings
from recsys.data import Dataset
from recsys.encoder.cache import ItemEmbeddings
from recsys.encoder.collab import CollabHead
from recsys.evaluation.runner import EvaluationReport
from recsys.evaluation.splits import Split
from recsys.nightly.night import run_night
from recsys.ranker import RankingModel
from recsys.registry.bundle import ModelBundle

HEAVY = (pl.DataFrame, pl.LazyFrame, pl.Series, np.ndarray, Dataset, Split, ItemEmbeddings, EvaluationReport)
HEAVY += (ModelBundle, RankingModel, CollabHead)


def _heavy(value: Any, where: str) -> list[str]:
    """Where in `value` (walking dataclasses, dicts and sequences) a frame, array or fitted object sits."""
    if isinstance(value, HEAVY):
        return [f"{where}: {type(value).__name__}"]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [x for f in dataclasses.fields(value) for x in _heavy(getattr(value, f.name), f"{where}.{f.name}")]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _heavy(v, f"{where}[{k!r}]")]
    if isinstance(value, list | tuple):
        return [x for i, v in enumerate(value) for x in _heavy(v, f"{where}[{i}]")]
    return []


def test_every_step_takes_and_returns_paths_ids_and_small_records(flow_env: dict) -> None:
    settings = load_settings(**flow_env)
    seen: dict[str, list[str]] = {}

    def checking(name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        seen[name] = _heavy(args, "args") + _heavy(kwargs, "kwargs") + _heavy(out, "returned")
        return out

    out = run_night(settings, run_step=checking, log=lambda _: None)
    assert out["status"] == "promoted"
    assert set(seen) >= {"load_and_validate", "split", "embed", "train_ranker", "evaluate", "gate", "build_lists"}
    assert {name: found for name, found in seen.items() if found} == {}
    # the night's folder (data, split, embeddings, report) is removed once the night ended well
    assert list((Path(flow_env["nightly"]["work_dir"]) / "nights").iterdir()) == []


def test_a_failed_night_keeps_its_handoffs_to_look_at(flow_env: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import recsys.nightly.tasks

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the evaluation ran out of memory")

    monkeypatch.setattr(recsys.nightly.tasks.steps, "evaluate_bundles", broken)
    settings = load_settings(**flow_env)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_night(settings, force=True, log=lambda _: None)
    (kept,) = (Path(flow_env["nightly"]["work_dir"]) / "nights").iterdir()
    assert {p.name for p in kept.iterdir()} == {"data", "split", "embeddings.parquet"}
    from recsys.data.stored import read_dataset

    assert read_dataset(kept / "data").interactions.height > 0
