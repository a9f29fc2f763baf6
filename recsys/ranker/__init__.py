"""Candidates, point-in-time features and the LightGBM LambdaRank ranker (the full pipeline).

Public names are imported lazily (PEP 562), so loading a saved `RankingModel` (the serving process) does not import
the fitting code (`pipeline`, `selection`, `window`, `training`, and with them the baselines).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "TEXT_FEATURES": "recsys.ranker._common",
    "CandidateConfig": "recsys.ranker.config",
    "PipelineConfig": "recsys.ranker.config",
    "RankerConfig": "recsys.ranker.config",
    "LambdaRanker": "recsys.ranker.model",
    "RankingModel": "recsys.ranker.scoring",
    "RankingState": "recsys.ranker.state",
    "train_ranker": "recsys.ranker.training",
    "PIPELINE_MODELS": "recsys.ranker.pipeline",
    "TEXT_MODELS": "recsys.ranker.pipeline",
    "RankingPipeline": "recsys.ranker.pipeline",
    "candidate_recall": "recsys.ranker.pipeline",
    "pipeline_factories": "recsys.ranker.pipeline",
}

__all__ = [
    "PIPELINE_MODELS",
    "TEXT_FEATURES",
    "TEXT_MODELS",
    "CandidateConfig",
    "LambdaRanker",
    "PipelineConfig",
    "RankerConfig",
    "RankingModel",
    "RankingPipeline",
    "RankingState",
    "candidate_recall",
    "pipeline_factories",
    "train_ranker",
]

if TYPE_CHECKING:
    from recsys.ranker._common import TEXT_FEATURES
    from recsys.ranker.config import CandidateConfig, PipelineConfig, RankerConfig
    from recsys.ranker.model import LambdaRanker
    from recsys.ranker.pipeline import (
        PIPELINE_MODELS,
        TEXT_MODELS,
        RankingPipeline,
        candidate_recall,
        pipeline_factories,
    )
    from recsys.ranker.scoring import RankingModel
    from recsys.ranker.state import RankingState
    from recsys.ranker.training import train_ranker


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
