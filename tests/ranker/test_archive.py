"""The arrays archive: a standard npz whose arrays load memory-mapped (read-only, no copy), equal to what was saved;
files written by plain `np.savez` (an earlier version's states) still load, by reading."""

from __future__ import annotations

import mmap

import numpy as np
import scipy.sparse as sp

from recsys.scoring import load_arrays, save_arrays


def _arrays() -> dict:
    rng = np.random.default_rng(0)
    return {
        "profile": rng.standard_normal((1000, 384)).astype(np.float32),
        "ids": np.asarray([f"user-{i}" for i in range(1001)], dtype=object),
        "odd": rng.integers(0, 9, size=(3, 5, 7)).astype(np.int16),
        "fortran": np.asfortranarray(rng.standard_normal((13, 11))),
        "flags": rng.random(17) > 0.5,
        "empty": np.zeros((0, 8)),
        "scalar": np.float64(2.5),
        "weights": sp.random(300, 200, density=0.05, format="csr", random_state=1),
    }


def _mapped(a: np.ndarray) -> bool:
    base: object = a
    while isinstance(base, np.ndarray | memoryview):
        base = base.base if isinstance(base, np.ndarray) else base.obj
    return isinstance(base, mmap.mmap)


def test_arrays_load_mapped_and_equal_to_what_was_saved(tmp_path) -> None:
    saved = _arrays()
    path = save_arrays(tmp_path / "a.npz", saved)
    got = load_arrays(path)
    assert set(got) == set(saved)
    for name, value in saved.items():
        if sp.issparse(value):
            assert sp.issparse(got[name]) and (got[name] != value).nnz == 0
            assert _mapped(got[name].data) and _mapped(got[name].indices)
        else:
            expected = np.asarray(value).astype(str) if np.asarray(value).dtype == object else np.asarray(value)
            assert got[name].dtype == expected.dtype and np.array_equal(got[name], expected), name
    for name in ("profile", "ids", "odd", "fortran", "flags"):
        assert _mapped(got[name]) and not got[name].flags.writeable, name
        assert got[name].ctypes.data % 64 == 0 or not got[name].size
    # a standard npz: numpy reads it as it is
    with np.load(path, allow_pickle=False) as plain:
        assert np.array_equal(plain["profile"], saved["profile"]) and np.array_equal(plain["fortran"], saved["fortran"])


def test_files_written_by_plain_savez_still_load(tmp_path) -> None:
    rng = np.random.default_rng(1)
    profile = rng.standard_normal((50, 7))
    path = tmp_path / "old.npz"
    with path.open("wb") as fh:
        np.savez(fh, profile=profile, ids=np.asarray(["a", "b"]))
    got = load_arrays(path)
    assert np.array_equal(got["profile"], profile) and got["ids"].tolist() == ["a", "b"]
    compressed = tmp_path / "zipped.npz"
    np.savez_compressed(compressed, profile=profile)
    assert np.array_equal(load_arrays(compressed)["profile"], profile)


def test_saving_over_a_mapped_file_leaves_the_mapping_readable(tmp_path) -> None:
    """A new save replaces the file (rename), so arrays mapped from the old one keep their values."""
    path = save_arrays(tmp_path / "a.npz", {"x": np.arange(100_000, dtype=np.float64)})
    old = load_arrays(path)["x"]
    save_arrays(path, {"x": np.zeros(10)})
    assert old[-1] == 99_999.0 and load_arrays(path)["x"].shape == (10,)
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]
