"""Small array helpers for scoring at (user, item) pairs instead of whole rows: cell lookups in sparse matrices,
products at given pairs, distinct values, and mean and deviation from sums. Used by the indexed candidate path
(`recsys.ranker.indexed`) and the sparse forms' exact top-k (`recsys.baselines.pooled`)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class Cells:
    """Cell lookups in a CSR matrix: `at(r, c)` = matrix[r[i], c[i]] for every i (0 where nothing is stored or
    c < 0). One binary search per pair over the stored entries' (row, column) keys, made once per matrix: scipy's
    own sampling scans a row per pair unless the pairs outnumber a tenth of the stored entries, which is slow on
    the dense-ish rows of the similarity products."""

    def __init__(self, matrix: sp.spmatrix) -> None:
        m = sp.csr_matrix(matrix)
        m.sum_duplicates()  # canonical: rows in order, columns sorted within rows, so the keys ascend
        self.n_cols = m.shape[1]
        self.keys = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr)) * self.n_cols + m.indices
        self.data = m.data

    def at(self, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        out = np.zeros(len(r))
        ok = c >= 0
        if not len(self.keys) or not ok.any():
            return out
        want = r[ok].astype(np.int64) * self.n_cols + c[ok]
        at = np.minimum(np.searchsorted(self.keys, want), len(self.keys) - 1)
        found = self.keys[at] == want
        vals = np.zeros(len(want))
        vals[found] = self.data[at[found]]
        out[ok] = vals
        return out


def lookup(matrix: sp.spmatrix, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """matrix[r[i], c[i]] for every i (`Cells`, for one use)."""
    return Cells(matrix).at(r, c)


def product_at(history: sp.spmatrix, similarity: sp.csc_matrix, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(history @ similarity)[r[i], c[i]] for every i, multiplying only the candidates' columns."""
    if not len(c):
        return np.zeros(0)
    cols = distinct(c)
    part = (sp.csr_matrix(history) @ similarity[:, cols]).toarray()  # users x distinct candidate items
    return part[r, np.searchsorted(cols, c)]


def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique without its hashing pass, which costs more on these short arrays)."""
    v = np.sort(values)
    return v[np.concatenate(([True], v[1:] != v[:-1]))] if len(v) else v


def moments(total: np.ndarray, squares: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation from sums over n values (`zscore_rows`' rule: deviation 1 where it is 0; a
    variance that is rounding noise of the second moment counts as 0)."""
    few = n <= 1  # one value or none: no spread (the dense rule gives deviation 1)
    n = np.maximum(n, 1)
    mean = total / n
    second = squares / n
    var = second - mean * mean
    flat = few | (var <= 1e-12 * np.maximum(second, 1e-300))
    return mean, np.where(flat, 1.0, np.sqrt(np.where(flat, 1.0, var)))


def first_not_in(ordered: np.ndarray, skip: np.ndarray, n: int) -> np.ndarray:
    """The first n values of `ordered`, in its order, that are not in `skip`."""
    head = ordered[: n + len(skip)]
    return head[~np.isin(head, skip)][:n]
