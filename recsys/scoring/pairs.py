"""Small array helpers for scoring at (user, item) pairs instead of whole rows: cell lookups in sparse matrices (by
sorted keys), products at given pairs, row-wise dot products and quadratic forms,
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


def lookup(matrix: sp.spmatrix, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """matrix[r[i], c[i]] for every i (`Cells`, for one use)."""
    return Cells(matrix).at(r, c)


class PairProduct:
    """`at(history, r, c)` = (history @ similarity)[r[i], c[i]] for every i, by the cheaper of two products with the
    same sums: the history's rows times the similarity's rows of the items in it (its cost: those rows' stored
    entries), or times the candidates' columns only (those columns' stored entries). A top-k-by-column similarity
    (SAR and item-kNN at scale) has k entries per column, but its popular items' rows hold thousands; either way each
    sum adds the history's terms in item order, so both give the same bits."""

    def __init__(self, similarity: sp.spmatrix) -> None:
        self.by_row = sp.csr_matrix(similarity)
        self.by_col = sp.csc_matrix(similarity)
        self.row_entries = np.diff(self.by_row.indptr)
        self.col_entries = np.diff(self.by_col.indptr)

    def at(self, history: sp.spmatrix, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        if not len(c):
            return np.zeros(0)
        history = sp.csr_matrix(history)
        cols = distinct(c)
        if self.row_entries[history.indices].sum() <= self.col_entries[cols].sum():
            return Cells(history @ self.by_row).at(r, c)
        return product_at_columns(history, self.by_col, r, c)


def product_at_columns(history: sp.spmatrix, by_col: sp.csc_matrix, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(history @ matrix)[r[i], c[i]] for every i, multiplying only the pairs' columns of the matrix (`by_col`, CSC):
    each sum adds the history's terms in item order, as the whole product does (the same bits)."""
    if not len(c):
        return np.zeros(0)
    cols = distinct(c)
    part = (sp.csr_matrix(history) @ by_col[:, cols]).toarray()  # users x distinct columns
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


def row_sums(values: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """The sum of each CSR row's stored `values` (0 for an empty row), each row's sum independent of the others."""
    out = np.zeros(len(indptr) - 1)
    filled = np.flatnonzero(np.diff(indptr))
    if len(filled):
        out[filled] = np.add.reduceat(values[: indptr[-1]], indptr[filled])
    return out


def row_best(matrix: sp.csr_matrix, ex_rows: np.ndarray, ex_cols: np.ndarray, m: int) -> list[np.ndarray]:
    """Per row of `matrix`, the columns of its m largest stored entries (any order; ties at the m-th: any of them),
    leaving out the excluded pairs (`ex_rows` ascending, `ex_cols`). A row's m + (its excluded count) largest entries
    hold its m largest kept ones, so only those are checked against the exclusions (EASE's rows at scale hold tens of
    thousands of entries, a user's seen items tens)."""
    bounds = np.searchsorted(ex_rows, np.arange(matrix.shape[0] + 1))
    out = []
    for i in range(matrix.shape[0]):
        lo, hi = matrix.indptr[i], matrix.indptr[i + 1]
        data, cols = matrix.data[lo:hi], matrix.indices[lo:hi]
        skip = ex_cols[bounds[i] : bounds[i + 1]]
        ask = m + len(skip)
        best = np.argpartition(-data, ask)[:ask] if len(data) > ask else np.arange(len(data))
        best = best[~np.isin(cols[best], skip)]
        if len(best) > m:
            best = best[np.argpartition(-data[best], m)[:m]]
        out.append(cols[best].astype(np.int64))
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


def first_free(n_values: int, skip: Sequence[np.ndarray], n: int) -> np.ndarray:
    """The first n of 0 .. n_values - 1 in no array of `skip` (one row; duplicates in `skip` allowed): they are below
    n + (the skipped count), so a mask that wide finds them (an np.isin over as wide a head sorts both sides: ~10x
    slower on EASE's supports of tens of thousands of items). `first_not_in_rows` does a batch whose rows skip few
    values (a batch pays its widest row's head)."""
    width = min(n_values, n + sum(len(s) for s in skip))
    taken = np.zeros(width, dtype=bool)
    for s in skip:
        taken[s[s < width]] = True
    return np.flatnonzero(~taken)[:n]


def in_pairs(r: np.ndarray, c: np.ndarray, ex_rows: np.ndarray, ex_cols: np.ndarray) -> np.ndarray:
    """For every i, whether (r[i], c[i]) is one of the pairs (`ex_rows`, `ex_cols`) (non-negative): one binary search
    of sorted (row, column) keys per pair, instead of an `np.isin` per row."""
    if not len(r) or not len(ex_rows):
        return np.zeros(len(r), dtype=bool)
    width = int(max(c.max(), ex_cols.max())) + 1
    keys = np.sort(np.asarray(ex_rows, dtype=np.int64) * width + ex_cols)
    want = np.asarray(r, dtype=np.int64) * width + c
    return keys[np.minimum(np.searchsorted(keys, want), len(keys) - 1)] == want


def first_allowed(values: np.ndarray, ex_rows: np.ndarray, ex_values: np.ndarray, n: int) -> list[np.ndarray]:
    """Per row i of `values` (rows x width, non-negative; -1: nothing), its first n entries, in order, that are not
    excluded for it (the pairs (`ex_rows`, `ex_values`)): one pass over the batch by sorted (row, value) keys
    instead of an `np.isin` per row."""
    if not len(values):
        return []
    ok = values >= 0
    if ok.any():
        rows = np.broadcast_to(np.arange(len(values))[:, None], values.shape)
        ok[ok] = ~in_pairs(rows[ok], values[ok], ex_rows, ex_values)
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
    values of the entries: per row, its k-th largest value by a partition of its own entries (their slices of each
    part), then only the entries at or above it are sorted. A padded rows x longest matrix did the same with
    `torch.topk`, and a permutation laying the entries out row after row did it in one pass, but EASE's rows at scale
    hold ~40k entries and both cost more than the partitions. One pool serves many value vectors."""

    def __init__(self, parts: Sequence[tuple[np.ndarray, np.ndarray]], n_rows: int) -> None:
        if not parts:
            raise ValueError("a pool needs at least one part")
        self.r, self.c = np.concatenate([r for r, _ in parts]), np.concatenate([c for _, c in parts])
        offsets = np.cumsum([0] + [len(r) for r, _ in parts])
        # row i's entries in part p: pool positions bounds[p, i]:bounds[p, i + 1]
        self.bounds = np.stack(
            [o + np.searchsorted(r, np.arange(n_rows + 1)) for (r, _), o in zip(parts, offsets[:-1], strict=True)]
        )

    def best(
        self, value: np.ndarray, k: int, *, exclude: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each row's k best (row, column, value) for `value` per pooled entry (in the pool's order), best first.
        `exclude`: (rows, columns) pairs never returned (a row's k best kept ones are among its k + (its excluded
        count) best entries, so the pool needs no filtering first)."""
        if not len(value):
            return self.r, self.c, value
        n_rows = self.bounds.shape[1] - 1
        ask = np.full(n_rows, k, dtype=np.int64)
        if exclude is not None:
            ask += np.bincount(exclude[0], minlength=n_rows)
        picked = []
        lows, highs = self.bounds[:, :-1].T.tolist(), self.bounds[:, 1:].T.tolist()
        for i in range(n_rows):
            spans = [(lo, hi) for lo, hi in zip(lows[i], highs[i], strict=True) if hi > lo]
            n = sum(hi - lo for lo, hi in spans)
            if n <= ask[i]:
                picked += [np.arange(lo, hi) for lo, hi in spans]
                continue
            row = (
                value[spans[0][0] : spans[0][1]] if len(spans) == 1 else np.concatenate([value[a:b] for a, b in spans])
            )
            kth = np.partition(row, n - ask[i])[n - ask[i]]
            local = np.flatnonzero(row >= kth)  # the row's best and any ties with the k-th
            # back to pool positions: a local position falls in the span whose cumulative start it passed
            starts = np.cumsum([0] + [hi - lo for lo, hi in spans])
            span = np.searchsorted(starts, local, side="right") - 1
            picked.append(np.asarray([lo for lo, _ in spans])[span] + local - starts[span])
        at = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
        r, c, v = self.r[at], self.c[at], value[at]
        if exclude is not None:
            kept = ~in_pairs(r, c, *exclude)
            r, c, v = r[kept], c[kept], v[kept]
        order = np.lexsort((c, -v, r))
        r, c, v = r[order], c[order], v[order]
        first = np.arange(len(r)) - np.searchsorted(r, r) < k
        return r[first], c[first], v[first]
