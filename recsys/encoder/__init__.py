"""Text encoder: offline pretrained model, item text, cached item embeddings. (LoRA fine-tuning: in progress.)"""

from __future__ import annotations

from recsys.encoder.cache import ItemEmbeddings, embed_items, text_hash
from recsys.encoder.model import EncoderConfig, TextEncoder, default_model_path, mean_pool, select_device
from recsys.encoder.text import ItemTextConfig, build_item_text

__all__ = [
    "EncoderConfig",
    "ItemEmbeddings",
    "ItemTextConfig",
    "TextEncoder",
    "build_item_text",
    "default_model_path",
    "embed_items",
    "mean_pool",
    "select_device",
    "text_hash",
]
