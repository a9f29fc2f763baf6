"""The identity of a model or adapter folder (its digest), shared by the encoder and its adapters."""

from __future__ import annotations

import hashlib
from pathlib import Path


def model_digest(path: Path) -> str:
    """sha256 over the config, vocabulary and weight files of a model or adapter folder: its identity."""
    h = hashlib.sha256()
    for f in sorted(Path(path).iterdir()):
        if f.is_file() and f.suffix in (".json", ".safetensors", ".bin", ".txt", ".model") and f.name != "recsys.json":
            h.update(f.name.encode())
            with f.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
    return h.hexdigest()
