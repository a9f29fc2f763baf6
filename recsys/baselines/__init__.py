"""Baseline recommenders behind one interface (`Recommender`): fit on training events, recommend top K."""

from __future__ import annotations

from typing import Any

from recsys.baselines._base import Recommender, top_k_frame
from recsys.baselines.factorization import ALS, BPR
from recsys.baselines.neighbourhood import EASE, SAR, ItemKNN, TopPop
from recsys.baselines.sequential import SequenceNeighbours
from recsys.baselines.spectral import EASELowPass, LowPass
from recsys.compute.scale import ScaleConfig

# The one list of baselines: `recsys evaluate --models`, the evaluation runner, `[nightly] baselines`, the contract
# tests (tests/baselines/test_contract.py) and the docs' model table (checked by tests/test_docs.py) read it. A new
# baseline is one module with a `Recommender` subclass plus one entry here.
BASELINES: dict[str, type[Recommender]] = {
    m.name: m for m in (TopPop, SAR, ItemKNN, EASE, LowPass, EASELowPass, SequenceNeighbours, ALS, BPR)
}


def build_baseline(name: str, *, seed: int, scale: ScaleConfig | None = None, **params: Any) -> Recommender:
    """A baseline by name with its documented defaults (`params` override them), seeded where it has randomness;
    `scale` goes to the models with sparse forms for large catalogs."""
    if name not in BASELINES:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(BASELINES)}")
    cls = BASELINES[name]
    extra: dict[str, Any] = {"seed": seed} if cls.seeded else {}
    if cls.scalable and scale is not None:
        extra["scale"] = scale
    return cls(**extra, **params)


__all__ = [
    "ALS",
    "BASELINES",
    "BPR",
    "EASE",
    "SAR",
    "EASELowPass",
    "ItemKNN",
    "LowPass",
    "Recommender",
    "ScaleConfig",
    "SequenceNeighbours",
    "TopPop",
    "build_baseline",
    "top_k_frame",
]
