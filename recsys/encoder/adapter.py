"""LoRA adapters on disk: a peft adapter folder plus `recsys.json` naming the base model it was trained on.

Adapters are safetensors + JSON (never pickles). Loading checks that the base model's identity (a digest of its
config, vocabulary and weights) is the one the adapter was trained on, so an adapter is never silently applied to
another model.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.encoder.digest import model_digest

if TYPE_CHECKING:
    import torch

ADAPTER_META = "recsys.json"


@contextmanager
def quiet_peft() -> Iterator[None]:
    """peft (<= 0.18) reads transformers' deprecated `is_gradient_checkpointing` when it wraps a model, and
    transformers 5 warns about it on every wrap: not ours to fix, so that one FutureWarning is silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def read_adapter_meta(path: Path) -> dict[str, Any]:
    """The `recsys.json` of an adapter folder (base model identity, configs, training history)."""
    path = Path(path)
    meta = path / ADAPTER_META
    if not (path / "adapter_config.json").is_file() or not meta.is_file():
        raise FileNotFoundError(
            f"{path}: not a recsys LoRA adapter folder (needs adapter_config.json and {ADAPTER_META}); "
            "adapters are written by recsys.encoder.fine_tune"
        )
    return json.loads(meta.read_text())


def check_base(adapter_path: Path, base_path: Path) -> dict[str, Any]:
    """Raise when the adapter was trained on another base model than `base_path`; return its metadata."""
    meta = read_adapter_meta(adapter_path)
    expected = meta.get("base_model_digest")
    actual = model_digest(base_path)
    if expected != actual:
        raise ValueError(
            f"{adapter_path}: adapter was trained on base model {meta.get('base_model_path')!r} "
            f"(digest {str(expected)[:16]}), but the encoder's base {str(base_path)!r} has digest {actual[:16]}; "
            "point EncoderConfig.model_path at the adapter's base model or fine-tune a new adapter"
        )
    return meta


def apply_adapter(
    model: torch.nn.Module, adapter_path: Path, *, base_path: Path, scale: float = 1.0
) -> torch.nn.Module:
    """The base model with the adapter merged into its weights (plain transformer again: inference is as fast).

    `scale` multiplies the adapter's weight change before merging (0 = the base model, 1 = the fine-tuned one):
    weight-space interpolation between the two (WiSE-FT)."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    if not 0.0 <= scale <= 1.0:
        raise ValueError(f"adapter scale must be within [0, 1], got {scale}")
    check_base(adapter_path, base_path)
    with quiet_peft():
        peft_model = PeftModel.from_pretrained(model, str(adapter_path))
    if scale != 1.0:
        layers = [m for m in peft_model.modules() if isinstance(m, LoraLayer)]
        if not layers:
            raise ValueError(f"{adapter_path}: no LoRA layers to scale")
        for layer in layers:
            for name in layer.scaling:
                layer.scaling[name] *= scale
    return peft_model.merge_and_unload()
