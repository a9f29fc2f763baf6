"""Named dense and CSR arrays in one `.npz` file (no pickles: object arrays are refused on load)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeAlias

import numpy as np
import scipy.sparse as sp

Array: TypeAlias = np.ndarray | sp.csr_matrix
_CSR = ("data", "indices", "indptr", "shape")


def save_arrays(path: Path, arrays: dict[str, Array]) -> Path:
    """Write `arrays` (dense numpy arrays of numbers or strings, or CSR matrices) to `path` (uncompressed npz)."""
    flat: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if "::" in name:
            raise ValueError(f"array name {name!r} may not contain '::'")
        if sp.issparse(value):
            csr = sp.csr_matrix(value)
            for part in _CSR:
                flat[f"{name}::csr_{part}"] = np.asarray(getattr(csr, part))
        else:
            arr: np.ndarray = np.asarray(value)
            if arr.dtype == object:  # strings: stored as fixed-width unicode, read back without pickle
                arr = arr.astype(str)
            flat[name] = arr
    path = Path(path)
    with path.open("wb") as fh:
        np.savez(fh, **flat)  # type: ignore[arg-type]  # numpy stubs: **arrays typed as the allow_pickle flag
    return path


def load_arrays(path: Path) -> dict[str, Array]:
    """The arrays written by `save_arrays` (CSR matrices rebuilt; strings as numpy unicode arrays)."""
    out: dict[str, Array] = {}
    csr: dict[str, dict[str, np.ndarray]] = {}
    with np.load(Path(path), allow_pickle=False) as data:
        for key in data.files:
            name, _, part = key.partition("::csr_")
            if part:
                csr.setdefault(name, {})[part] = data[key]
            else:
                out[name] = data[key]
    for name, parts in csr.items():
        out[name] = sp.csr_matrix(
            (parts["data"], parts["indices"], parts["indptr"]), shape=tuple(int(v) for v in parts["shape"])
        )
    return out
