"""Candidates, point-in-time features and the LightGBM LambdaRank ranker (the full pipeline)."""

from __future__ import annotations

from recsys.ranker.model import LambdaRanker, RankerConfig, train_ranker
from recsys.ranker.pipeline import (
    PIPELINE_MODELS,
    TEXT_FEATURES,
    TEXT_MODELS,
    CandidateConfig,
    PipelineConfig,
    RankingPipeline,
    candidate_recall,
    pipeline_factories,
)

__all__ = [
    "PIPELINE_MODELS",
    "TEXT_FEATURES",
    "TEXT_MODELS",
    "CandidateConfig",
    "LambdaRanker",
    "PipelineConfig",
    "RankerConfig",
    "RankingPipeline",
    "candidate_recall",
    "pipeline_factories",
    "train_ranker",
]
