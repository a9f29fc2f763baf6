"""Named dense and CSR arrays in one `.npz` file (no pickles: object arrays are refused on load), read memory-mapped.

The file is a standard uncompressed npz (`np.load` reads it), written so that every array's data starts on a 64-byte
boundary of the file: `load_arrays` then maps each array from the file instead of reading it. A state's per-user
arrays (interest profiles: 1.5 KB a user at 384 dimensions) take no memory until a request touches a user's row, so
a service's start-up and memory do not grow with the number of users. Arrays of a file written otherwise (an
earlier version's, or compressed) are read into memory as before.
"""

from __future__ import annotations

import io
import mmap
import os
import struct
import zipfile
from pathlib import Path
from typing import IO, TypeAlias

import numpy as np
import scipy.sparse as sp

Array: TypeAlias = np.ndarray | sp.csr_matrix
_CSR = ("data", "indices", "indptr", "shape")
ALIGN = 64  # bytes: the .npy format's own alignment of data within a member
_LOCAL_HEADER = 30  # fixed part of a zip member's local header
_ZIP64_EXTRA = 20  # the zip64 extra field zipfile writes for a member opened with force_zip64
_CHUNK = 1 << 26


def _flatten(arrays: dict[str, Array]) -> dict[str, np.ndarray]:
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
    return flat


def _write_npy(out: IO[bytes], arr: np.ndarray, data_at: int) -> None:
    """`arr` in the .npy format (version 1.0, or 2.0 for a long header), its header padded with spaces so that the data
    starts at a multiple of ALIGN from the file's start, given that the member starts at `data_at`."""
    arr = np.asarray(arr, order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
    text = repr({"descr": np.lib.format.dtype_to_descr(arr.dtype), "fortran_order": False, "shape": arr.shape})

    def header(length_bytes: int) -> bytes:  # after the magic string (6), the version (2) and the length field
        pad = -(data_at + 8 + length_bytes + len(text) + 1) % ALIGN
        return (text + " " * pad + "\n").encode("latin1")

    version, length_format, head = (1, 0), "<H", header(2)
    if len(head) >= 1 << 16:  # a very long shape: version 2.0's four-byte length
        version, length_format, head = (2, 0), "<I", header(4)
    out.write(np.lib.format.magic(*version))
    out.write(struct.pack(length_format, len(head)))
    out.write(head)
    raw = arr.reshape(-1).view(np.uint8) if arr.size else np.zeros(0, dtype=np.uint8)
    for start in range(0, len(raw), _CHUNK):
        out.write(raw[start : start + _CHUNK].data)


def save_arrays(path: Path, arrays: dict[str, Array]) -> Path:
    """Write `arrays` (dense numpy arrays of numbers or strings, or CSR matrices) to `path` (uncompressed npz, each
    array's data aligned for memory mapping)."""
    flat = _flatten(arrays)
    path = Path(path)
    # written beside, then renamed over `path`: a process that maps the old file keeps reading it (rewriting a mapped
    # file in place would truncate it under the mapping)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in flat.items():
            name = f"{key}.npy"
            # where this member's data will start: its local header (written at the current position) and the zip64
            # extra field; checked on load, so a different zipfile layout costs a copy, never a wrong array
            data_at = fh.tell() + _LOCAL_HEADER + len(name.encode("utf-8")) + _ZIP64_EXTRA
            with zf.open(name, "w", force_zip64=True) as out:
                _write_npy(out, arr, data_at)
    os.replace(tmp, path)
    return path


def _member(mapped: mmap.mmap, info: zipfile.ZipInfo) -> np.ndarray | None:
    """A stored member's array as a read-only view of the mapping (a copy when its data is not aligned); None when it
    cannot be mapped (compressed, or object dtype)."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    name_len, extra_len = struct.unpack_from("<HH", mapped, info.header_offset + 26)
    start = info.header_offset + _LOCAL_HEADER + name_len + extra_len
    # only the .npy header is copied out (the magic string, the version, the header's length, the header): reading
    # more would page in the start of every array at load
    major = mapped[start + 6] if info.file_size > 8 else 0
    fixed = 10 if major == 1 else 12
    if info.file_size < fixed:
        return None
    length = struct.unpack_from("<H" if major == 1 else "<I", mapped, start + 8)[0]
    head = io.BytesIO(mapped[start : start + min(info.file_size, fixed + length)])
    version = np.lib.format.read_magic(head)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
    else:
        return None
    if dtype.hasobject:
        return None
    offset, count = start + head.tell(), int(np.prod(shape, dtype=np.int64))
    if count * dtype.itemsize > info.file_size - head.tell():
        raise ValueError(f"{info.filename}: the array's header promises more data than the member holds")
    if count == 0:
        return np.zeros(shape, dtype=dtype)
    flat = np.frombuffer(mapped, dtype=dtype, count=count, offset=offset)
    if offset % ALIGN:
        flat = flat.copy()  # written by another writer: read, as before
    return flat.reshape(shape, order="F" if fortran else "C")


def load_arrays(path: Path) -> dict[str, Array]:
    """The arrays written by `save_arrays` (CSR matrices rebuilt; strings as numpy unicode arrays). Arrays are mapped
    from the file, read-only; those that cannot be mapped are read."""
    path = Path(path)
    raw: dict[str, np.ndarray] = {}
    with path.open("rb") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if path.stat().st_size else None
        with zipfile.ZipFile(fh) as zf:
            unmapped = []
            for info in zf.infolist():
                key = info.filename.removesuffix(".npy")
                got = _member(mapped, info) if mapped is not None else None
                if got is None:
                    unmapped.append(key)
                else:
                    raw[key] = got
    if unmapped:
        with np.load(path, allow_pickle=False) as data:
            for key in unmapped:
                raw[key] = data[key]
    out: dict[str, Array] = {}
    csr: dict[str, dict[str, np.ndarray]] = {}
    for key, value in raw.items():
        name, _, part = key.partition("::csr_")
        if part:
            csr.setdefault(name, {})[part] = value
        else:
            out[name] = value
    for name, parts in csr.items():
        out[name] = sp.csr_matrix(
            (parts["data"], parts["indices"], parts["indptr"]), shape=tuple(int(v) for v in parts["shape"])
        )
    return out
