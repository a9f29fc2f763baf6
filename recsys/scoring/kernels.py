"""Compiled loops (numba) for the per-user work that numpy and scipy can only do in several passes.

Imported lazily, inside the functions that call these loops (`recsys.scoring.row_product`, `recsys.scoring.topk`):
the command line never pays numba's import. Compiled code is cached on disk beside this module (~10 s to compile on
a machine's first use, ~1 s to load after; `recsys.scoring.row_product.warm_up` does it before a service serves).
Every loop releases the GIL (`nogil`), so a night's user batches on threads run side by side, and none uses
fast-math: a product's values are scipy's, bit for bit (the tests compare them).
"""

from __future__ import annotations

import numba
import numpy as np

_jit = numba.njit(nogil=True, cache=True)


@_jit
def _block_sum(a: np.ndarray, lo: int, n: int) -> float:
    """a[lo:lo + n] (n <= BLOCK) with 8 running sums, as numpy's pairwise summation sums a block."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - (n % 8):
        j = lo + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


BLOCK = 128


@_jit
def pairwise_sum(a: np.ndarray, lo: int, n: int) -> float:
    """The sum of a[lo:lo + n] in blocks of BLOCK values (8 running sums each), the blocks' sums then added in pairs,
    level by level: rounding error O(log n), as numpy's pairwise summation, instead of a running sum's O(n). Not
    recursive (numba's on-disk cache does not reload recursive functions safely)."""
    if n <= BLOCK:
        return _block_sum(a, lo, n)
    width = (n + BLOCK - 1) // BLOCK
    partial = np.empty(width)
    for b in range(width):
        start = b * BLOCK
        partial[b] = _block_sum(a, lo + start, min(BLOCK, n - start))
    while width > 1:
        half = width // 2
        for i in range(half):
            partial[i] = partial[2 * i] + partial[2 * i + 1]
        if width % 2:
            partial[half] = partial[width - 1]
            half += 1
        width = half
    return partial[0]


@_jit
def row_product(
    a_indptr: np.ndarray,
    a_indices: np.ndarray,
    a_data: np.ndarray,
    b_indptr: np.ndarray,
    b_indices: np.ndarray,
    b_data: np.ndarray,
    table: np.ndarray,
    out_indptr: np.ndarray,
    out_indices: np.ndarray,
    out_data: np.ndarray,
    sums: np.ndarray,
    squares: np.ndarray,
) -> None:
    """A @ B (CSR, float64) into `table` (rows x B's columns, zeros on entry), with each row's non-zeros as CSR
    (`out_indptr`, `out_indices` ascending, `out_data`) and the sums of their values and squared values (pairwise,
    in column order).

    Each output value adds A's terms in A's row order, as scipy's `csr_matmat` does (the same bits as
    `(A @ B).toarray()`; the table starts at +0.0, so no value is ever -0.0). The non-zeros are then found by one
    sequential, branch-free pass over the dense row (`out_indices` and `out_data` need one spare slot past the last
    non-zero). scipy's linked list of touched columns costs a second random access per term instead (at 100k items a
    user's row adds tens of thousands of terms); listing columns as terms first reach them, or a pass that branches
    on each value, cost more (measured on the nights' models)."""
    n_rows, n_cols = table.shape
    squared = np.empty(n_cols)
    nnz = 0
    out_indptr[0] = 0
    for i in range(n_rows):
        for jj in range(a_indptr[i], a_indptr[i + 1]):
            j = a_indices[jj]
            v = a_data[jj]
            for kk in range(b_indptr[j], b_indptr[j + 1]):
                table[i, b_indices[kk]] += v * b_data[kk]
        start = nnz
        for k in range(n_cols):  # branch-free: every column is written, and kept if its value is not 0
            x = table[i, k]
            out_indices[nnz] = k
            out_data[nnz] = x
            nnz += x != 0
        out_indptr[i + 1] = nnz
        if nnz > start:
            for e in range(start, nnz):
                squared[e - start] = out_data[e] * out_data[e]
            sums[i] = pairwise_sum(out_data, start, nnz - start)
            squares[i] = pairwise_sum(squared, 0, nnz - start)


@_jit
def _worse(v: float, c: int, w: float, d: int) -> bool:
    """(v, c) ranks below (w, d): a smaller value, or the same value at a larger column."""
    return v < w or (v == w and c > d)


@_jit
def _sift_down(heap_v: np.ndarray, heap_c: np.ndarray, size: int, at: int) -> None:
    """Restore the min-heap (the worst entry on top, `_worse` order) below `at`."""
    while True:
        low = at
        left = 2 * at + 1
        right = left + 1
        if left < size and _worse(heap_v[left], heap_c[left], heap_v[low], heap_c[low]):
            low = left
        if right < size and _worse(heap_v[right], heap_c[right], heap_v[low], heap_c[low]):
            low = right
        if low == at:
            return
        heap_v[at], heap_v[low] = heap_v[low], heap_v[at]
        heap_c[at], heap_c[low] = heap_c[low], heap_c[at]
        at = low


@_jit
def _offer(heap_v: np.ndarray, heap_c: np.ndarray, size: int, m: int, v: float, c: int) -> int:
    """Keep (v, c) in a heap of the m best seen so far (`_worse` on top): pushed while it holds fewer than m,
    else in place of the worst kept if better than it. Returns the heap's new size."""
    if size < m:  # push, then sift up
        at = size
        heap_v[at] = v
        heap_c[at] = c
        while at > 0:
            parent = (at - 1) // 2
            if not _worse(heap_v[at], heap_c[at], heap_v[parent], heap_c[parent]):
                break
            heap_v[at], heap_v[parent] = heap_v[parent], heap_v[at]
            heap_c[at], heap_c[parent] = heap_c[parent], heap_c[at]
            at = parent
        return size + 1
    if m > 0 and _worse(heap_v[0], heap_c[0], v, c):  # better than the worst kept: replace it
        heap_v[0] = v
        heap_c[0] = c
        _sift_down(heap_v, heap_c, size, 0)
    return size


@_jit
def _drain(heap_v: np.ndarray, heap_c: np.ndarray, size: int, out: np.ndarray) -> None:
    """Empty the heap's `size` entries into out[:size], best first (the worst popped to the end, one at a time)."""
    for last in range(size - 1, -1, -1):
        out[last] = heap_c[0]
        heap_v[0] = heap_v[last]
        heap_c[0] = heap_c[last]
        _sift_down(heap_v, heap_c, last, 0)


@_jit
def best_stored(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    n_cols: int,
    ex_ptr: np.ndarray,
    ex_cols: np.ndarray,
    m: int,
    out_ptr: np.ndarray,
    out_cols: np.ndarray,
) -> None:
    """Per row i of a CSR matrix (`indptr`, `indices`, `data`; `n_cols` columns), the columns of its m largest
    stored values that row i does not exclude (`ex_cols[ex_ptr[i]:ex_ptr[i + 1]]`): largest first, ties by the
    smaller column. One pass over the stored entries with a heap of m (the worst kept on top, so most entries cost
    one comparison)."""
    excluded = np.zeros(n_cols, dtype=np.bool_)
    heap_v = np.empty(max(m, 1))
    heap_c = np.empty(max(m, 1), dtype=np.int64)
    out_ptr[0] = 0
    filled = 0
    for i in range(len(indptr) - 1):
        for e in range(ex_ptr[i], ex_ptr[i + 1]):
            excluded[ex_cols[e]] = True
        size = 0
        for e in range(indptr[i], indptr[i + 1] if m > 0 else indptr[i]):
            v = data[e]
            c = indices[e]
            if size == m and (v < heap_v[0] or (v == heap_v[0] and c > heap_c[0])):
                continue  # most entries: no better than the worst kept
            if excluded[c]:
                continue
            size = _offer(heap_v, heap_c, size, m, v, c)
        _drain(heap_v, heap_c, size, out_cols[filled : filled + size])
        filled += size
        out_ptr[i + 1] = filled
        for e in range(ex_ptr[i], ex_ptr[i + 1]):
            excluded[ex_cols[e]] = False


@_jit
def top_k_rows(scores: np.ndarray, k: int, out: np.ndarray) -> None:
    """Each row's k largest scores' columns into `out` (rows x k), best first, ties by the smaller column: a stable
    descending sort's first k. One pass per row with a heap of k (columns come in ascending order, so a later
    column replaces the worst kept only with a larger value). No NaN (the caller maps it to -inf)."""
    n_rows, n_cols = scores.shape
    heap_v = np.empty(max(k, 1))
    heap_c = np.empty(max(k, 1), dtype=np.int64)
    for i in range(n_rows):
        size = 0
        for c in range(n_cols):
            v = scores[i, c]
            if size < k or v > heap_v[0]:  # (columns ascend: an equal value at a later column is not better)
                size = _offer(heap_v, heap_c, size, k, v, c)
        _drain(heap_v, heap_c, size, out[i])
