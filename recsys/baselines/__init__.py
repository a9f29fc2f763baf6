"""Baseline recommenders behind one interface (`Recommender`): fit on training events, recommend top K."""

from __future__ import annotations

from recsys.baselines._base import Recommender, top_k_frame
from recsys.baselines.factorization import ALS, BPR
from recsys.baselines.neighbourhood import EASE, SAR, ItemKNN, TopPop
from recsys.baselines.sequential import SequenceNeighbours
from recsys.baselines.spectral import EASELowPass, LowPass

BASELINES: dict[str, type[Recommender]] = {
    m.name: m for m in (TopPop, SAR, ItemKNN, EASE, LowPass, EASELowPass, SequenceNeighbours, ALS, BPR)
}

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
    "SequenceNeighbours",
    "TopPop",
    "top_k_frame",
]
