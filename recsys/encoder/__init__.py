"""Text encoder: offline pretrained model, LoRA fine-tuning on interaction pairs, cached item embeddings and
interest-match scores.

Public names are imported lazily (PEP 562), so `import recsys.encoder.finetune` needs only torch, transformers and
peft (the GPU check runs it on a machine without the data stack), and importing the package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "EncoderConfig": "model",
    "TextEncoder": "model",
    "default_model_path": "model",
    "mean_pool": "model",
    "select_device": "model",
    "cpu_has_fast_bf16": "model",
    "ItemEmbeddings": "cache",
    "embed_items": "cache",
    "text_hash": "cache",
    "ItemTextConfig": "text",
    "build_item_text": "text",
    "FineTuneConfig": "config",
    "FineTuneResult": "finetune",
    "FineTuneStatus": "finetune",
    "LoRAConfig": "config",
    "PairSet": "pairs",
    "fine_tune": "finetune",
    "PairConfig": "pairs",
    "TrainingPairs": "pairs",
    "build_pairs": "pairs",
    "INTEREST_FEATURES": "interest",
    "InterestConfig": "interest",
    "UserInterests": "interest",
    "interest_features": "interest",
    "profile_scores": "interest",
    "user_interests": "interest",
    "TextRecommender": "recommender",
    "read_adapter_meta": "adapter",
    "EncoderStageConfig": "config",
    "TextEmbedder": "stage",
}

__all__ = [
    "INTEREST_FEATURES",
    "EncoderConfig",
    "EncoderStageConfig",
    "FineTuneConfig",
    "FineTuneResult",
    "FineTuneStatus",
    "InterestConfig",
    "ItemEmbeddings",
    "ItemTextConfig",
    "LoRAConfig",
    "PairConfig",
    "PairSet",
    "TextEmbedder",
    "TextEncoder",
    "TextRecommender",
    "TrainingPairs",
    "UserInterests",
    "build_item_text",
    "build_pairs",
    "cpu_has_fast_bf16",
    "default_model_path",
    "embed_items",
    "fine_tune",
    "interest_features",
    "mean_pool",
    "profile_scores",
    "read_adapter_meta",
    "select_device",
    "text_hash",
    "user_interests",
]

if TYPE_CHECKING:
    from recsys.encoder.adapter import read_adapter_meta
    from recsys.encoder.cache import ItemEmbeddings, embed_items, text_hash
    from recsys.encoder.config import EncoderStageConfig, FineTuneConfig, LoRAConfig
    from recsys.encoder.finetune import FineTuneResult, FineTuneStatus, fine_tune
    from recsys.encoder.interest import (
        INTEREST_FEATURES,
        InterestConfig,
        UserInterests,
        interest_features,
        profile_scores,
        user_interests,
    )
    from recsys.encoder.model import (
        EncoderConfig,
        TextEncoder,
        cpu_has_fast_bf16,
        default_model_path,
        mean_pool,
        select_device,
    )
    from recsys.encoder.pairs import PairConfig, PairSet, TrainingPairs, build_pairs
    from recsys.encoder.recommender import TextRecommender
    from recsys.encoder.stage import TextEmbedder
    from recsys.encoder.text import ItemTextConfig, build_item_text


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"recsys.encoder.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'recsys.encoder' has no attribute {name!r}")
