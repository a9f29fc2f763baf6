"""Scoring with fitted arrays, no fitting code: the numpy/scipy kernels of the collaborative sources (shared by the
baselines that fit them and by the state a night saves for serving), the item indexes of large catalogs' candidates
and a plain array archive format.

The serving process imports this package, never `recsys.baselines` (whose modules fit models): see the import
contracts in pyproject.toml.
"""

from __future__ import annotations

from recsys.scoring.archive import load_arrays, save_arrays
from recsys.scoring.sources import (
    BlendParts,
    EaseWeights,
    ItemSimilarity,
    LowPassFactors,
    SequenceGraph,
    blend_components,
)
from recsys.scoring.vector_index import ItemIndexes, VectorIndex

__all__ = [
    "BlendParts",
    "EaseWeights",
    "ItemIndexes",
    "ItemSimilarity",
    "LowPassFactors",
    "SequenceGraph",
    "VectorIndex",
    "blend_components",
    "load_arrays",
    "save_arrays",
]
