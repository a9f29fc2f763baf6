"""Small array helpers for scoring at (user, item) pairs instead of whole rows: cell lookups in sparse matrices (by
sorted keys, or a dense table for a batch), products at given pairs, row-wise dot products and quadratic forms,
distinct values, mean and deviation from sums, each row's first values it does not exclude (one pass per batch), and
each row's best pooled entries. Used by the indexed candidate path (`recsys.ranker.indexed`) and the sparse forms'
exact top-k (`recsys.baselines.pooled`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from recsys.scoring.threads import one_blas_thread


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


class DenseCells:
    """`Cells` through the matrix made dense (rows x columns float64), for a small matrix whose stored entries are
    not in order: a sparse product's rows come unsorted, and sorting them for `Cells` was 22% of the list building's
    time at 1M users x 100k items (py-spy; EASE's sparse rows hold thousands of entries per user); zeroing and
    filling a batch's table costs far less, and a lookup is one gather."""

    def __init__(self, matrix: sp.spmatrix) -> None:
        self.table = sp.csr_matrix(matrix).toarray()

    def at(self, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        out = np.zeros(len(r))
        ok = c >= 0
        out[ok] = self.table[r[ok], c[ok]]
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


def row_dots(left: np.ndarray, r: np.ndarray, right: np.ndarray, c: np.ndarray) -> np.ndarray:
    """left[r[i]] . right[c[i]] for every i, in float64, for pairs grouped by row (each r's pairs contiguous).

    One product per row of `left` over its pairs' rows of `right` (gathered in their own precision, float32 vectors
    convert exactly): gathering both sides per pair moved two float64 vectors per pair and made the interest match's
    scores the indexed path's largest cost. The same bits as `np.einsum("ij,ij->i", left[r], right[c])`, and a
    pair's value does not depend on which other pairs are computed with it (a BLAS matrix-vector product's can)."""
    out = np.zeros(len(r))
    if not len(r):
        return out
    starts = np.flatnonzero(np.concatenate(([True], r[1:] != r[:-1])))
    ends = np.append(starts[1:], len(r))
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        out[lo:hi] = np.einsum("ij,j->i", right[c[lo:hi]].astype(np.float64, copy=False), left[r[lo]])
    return out


def row_products(x: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """x_i . vector for every row i, each row's value independent of the others (a BLAS matrix-vector product's last
    bits depend on how many rows it gets; a user's value must not depend on the batch)."""
    return np.einsum("ij,j->i", x, vector)


def quadratic_forms(x: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """x_i' G x_i for every row i, one row at a time (independent of the batch, as `row_products`; a three-operand
    einsum made the same sums ~10x slower), on one BLAS thread (`recsys.scoring.threads`)."""
    with one_blas_thread():
        return np.array([float(row @ gram @ row) for row in x], dtype=np.float64)


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
    """The first n values of `ordered`, in its order, that are not in `skip` (one row; `first_not_in_rows` does a
    batch whose rows exclude few values: a batch pays its widest row's head, so rows that exclude thousands of the
    order's first values, e.g. EASE's support, are cheaper one at a time)."""
    head = ordered[: n + len(skip)]
    return head[~np.isin(head, skip)][:n]


def first_allowed(values: np.ndarray, ex_rows: np.ndarray, ex_values: np.ndarray, n: int) -> list[np.ndarray]:
    """Per row i of `values` (rows x width, non-negative; -1: nothing), its first n entries, in order, that are not
    excluded for it (the pairs (`ex_rows`, `ex_values`)): one pass over the batch by sorted (row, value) keys
    instead of an `np.isin` per row."""
    if not len(values):
        return []
    ok = values >= 0
    if len(ex_rows) and ok.any():
        width = int(max(values.max(), ex_values.max())) + 1
        rows = np.arange(len(values), dtype=np.int64)
        keys = np.sort(ex_rows.astype(np.int64) * width + ex_values)
        want = (rows[:, None] * width + values)[ok]
        at = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
        ok[ok] = keys[at] != want
    ok &= np.cumsum(ok, axis=1) <= n
    return np.split(values[ok].astype(np.int64, copy=False), np.cumsum(ok.sum(axis=1))[:-1])


def first_not_in_rows(
    ordered: np.ndarray, n_rows: int, ex_rows: np.ndarray, ex_values: np.ndarray, n: int
) -> list[np.ndarray]:
    """Per row i < n_rows, the first n values of `ordered`, in its order, that row i does not exclude. `ordered`:
    distinct non-negative values; the exclusions: pairs (`ex_rows`, `ex_values`). Only the head of `ordered` that
    every row needs is looked at: the shortest width W with W >= n + (the most excluded values any row has among the
    first W), so a row with thousands of excluded values spread over a large catalog costs what the few in the head
    cost."""
    m = len(ordered)
    if not n_rows or not m or n <= 0:
        return [np.zeros(0, dtype=np.int64) for _ in range(n_rows)]
    ex_rows, ex_values = np.asarray(ex_rows, dtype=np.int64), np.asarray(ex_values, dtype=np.int64)
    position = np.full(int(max(ordered.max(), ex_values.max(initial=0))) + 1, m)
    position[ordered] = np.arange(m)  # excluded values outside `ordered` sit at m: never in a head
    at = position[ex_values]
    width = min(m, n)
    while True:  # the excluded counts within the head only grow with it: a few rounds reach the fixed point
        inside = at < width
        need = min(m, n + (int(np.bincount(ex_rows[inside], minlength=n_rows).max()) if inside.any() else 0))
        if need <= width:
            break
        width = need
    head = np.broadcast_to(ordered[:width], (n_rows, width))
    return first_allowed(head, ex_rows[inside], ex_values[inside], n)


class RowPool:
    """Candidate (row, column) entries given in parts, each with rows ascending and no column twice in a row (e.g.
    EASE's support as CSR, then extra picks). `best(value, k)`: each row's k best by value, ties by column, for any
    values of the entries: the k-th largest value per row from a padded rows x longest matrix (`torch.topk`), then
    only the entries at or above it are sorted (the pool itself never is). One pool serves many value vectors."""

    def __init__(self, parts: Sequence[tuple[np.ndarray, np.ndarray]], n_rows: int) -> None:
        rows, cols, pos = [], [], []
        filled = np.zeros(n_rows, dtype=np.int64)  # entries placed per row so far
        for r, c in parts:
            starts = np.searchsorted(r, np.arange(n_rows))
            pos.append(filled[r] + np.arange(len(r)) - starts[r])
            filled += np.bincount(r, minlength=n_rows)
            rows.append(r)
            cols.append(c)
        self.r, self.c, self.pos = np.concatenate(rows), np.concatenate(cols), np.concatenate(pos)
        self.shape = (n_rows, int(filled.max()) if n_rows else 0)

    def best(self, value: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each row's k best (row, column, value) for `value` per pooled entry (in the pool's order), best first."""
        import torch

        if not len(value):
            return self.r, self.c, value
        m = np.full(self.shape, -np.inf)
        m[self.r, self.pos] = value
        kk = min(k, self.shape[1])
        kth = torch.topk(torch.from_numpy(m), kk, dim=1, sorted=False).values.min(dim=1).values.numpy()
        keep = value >= kth[self.r]  # the row's k best and any ties with the k-th
        r, c, v = self.r[keep], self.c[keep], value[keep]
        order = np.lexsort((c, -v, r))
        r, c, v = r[order], c[order], v[order]
        first = np.arange(len(r)) - np.searchsorted(r, r) < k
        return r[first], c[first], v[first]
