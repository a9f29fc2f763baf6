"""A batch of users' sparse score rows (a history times a sparse item x item model), as the indexed path reads them.

EASE's neighbour form at scale gives each user a row of tens of thousands of stored scores (popular items are
every item's neighbours). The indexed candidate path reads such a row four ways: values at pairs, its sums and sums
of squares (the z-score's moments), and its best entries outside the seen items. Done with scipy and numpy that was
five passes over every entry (the product, a dense table for lookups, two row sums, a partition per row), about a
third of a user's list at 1M users x 100k items (py-spy). `RowProduct` makes it one compiled pass
(`recsys.scoring.kernels`) that fills the table and the sums together, and one heap pass per row for the best
entries, with the same values and sums, bit for bit, as the scipy product it replaces (`row_product_of` keeps that
product, with sorted-key lookups, for batches too large for a dense table).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import scipy.sparse as sp

from recsys.scoring.pairs import Cells, moments, row_best, row_sums

# Above this many rows x columns a batch's product stays sparse (`SparseRowProduct`): 16M cells are a 128 MB table;
# the callers' batches stay well under it (`recsys.ranker.candidates.user_batch`: 4M cells; the pooled baselines'
# `score_batch_size`: 8M).
DENSE_CELLS = 16_000_000


class _StoredSums:
    """What both forms share: each row's sums of its stored values and of their squares (`sums`, `squares`)."""

    sums: np.ndarray
    squares: np.ndarray

    def moments(
        self, seen_rows: np.ndarray, seen_values: np.ndarray, n_valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and deviation per row over each row's valid items (n_valid of them, the unstored ones 0): the stored
        totals minus the seen items' values (`seen_rows` their rows), so the stored entries are read once, never
        masked."""
        n = len(self.sums)
        return moments(
            self.sums - np.bincount(seen_rows, seen_values, minlength=n),
            self.squares - np.bincount(seen_rows, seen_values**2, minlength=n),
            n_valid,
        )


class RowProduct(_StoredSums):
    """left @ right for a batch (left: users x items, right: items x columns; CSR), computed in float64 into a dense
    users x columns table (the values of scipy's product, bit for bit), with each row's stored entries (the
    product's non-zeros as CSR: `indptr`, `indices` in column order, `data`) and their sums and sums of squares
    (pairwise, in column order: scipy lists a row's entries in another order, so a sum may differ from the scipy
    path's in its last bits)."""

    def __init__(self, left: sp.spmatrix, right: sp.spmatrix) -> None:
        from recsys.scoring import kernels

        a, b = sp.csr_matrix(left), sp.csr_matrix(right)
        if a.shape[1] != b.shape[0]:
            raise ValueError(f"cannot multiply {a.shape} by {b.shape}")
        n_rows, n_cols = a.shape[0], b.shape[1]
        # stored entries per row: at most the terms that reach it, and at most the columns
        bound = min(int(np.diff(b.indptr)[a.indices].sum()), n_rows * n_cols)
        self.table = np.zeros((n_rows, n_cols))
        self.indptr = np.zeros(n_rows + 1, dtype=np.int64)
        indices, data = np.empty(bound + 1, dtype=np.int64), np.empty(bound + 1)  # + the kernel's spare slot
        self.sums, self.squares = np.zeros(n_rows), np.zeros(n_rows)
        # index arrays as they are (the kernel compiles per index type: no copy of the model per batch)
        kernels.row_product(
            a.indptr,
            a.indices,
            np.asarray(a.data, dtype=np.float64),
            b.indptr,
            b.indices,
            np.asarray(b.data, dtype=np.float64),
            self.table,
            self.indptr,
            indices,
            data,
            self.sums,
            self.squares,
        )
        self.indices, self.data = indices[: self.indptr[-1]], data[: self.indptr[-1]]

    def at(self, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """The product at pairs (row, column); 0 where c < 0."""
        out = np.zeros(len(r))
        ok = c >= 0
        out[ok] = self.table[r[ok], c[ok]]
        return out

    def best(self, ex_rows: np.ndarray, ex_cols: np.ndarray, m: int) -> list[np.ndarray]:
        """Per row, the columns of its m largest stored entries leaving out the excluded pairs (`ex_rows`
        ascending), best first, ties by the smaller column."""
        from recsys.scoring import kernels

        n_rows = self.table.shape[0]
        ex_ptr = np.searchsorted(ex_rows, np.arange(n_rows + 1)).astype(np.int64)
        out_ptr = np.zeros(n_rows + 1, dtype=np.int64)
        out_cols = np.empty(n_rows * max(m, 0), dtype=np.int64)
        ex = np.asarray(ex_cols, dtype=np.int64)
        kernels.best_stored(self.indptr, self.indices, self.data, self.table.shape[1], ex_ptr, ex, m, out_ptr, out_cols)
        return np.split(out_cols[: out_ptr[-1]], out_ptr[1:-1])


class SparseRowProduct(_StoredSums):
    """`RowProduct`'s reads of scipy's product kept sparse (its stored entries in scipy's order; lookups by sorted
    keys): for batches whose dense table would be too large. Its `best` leaves ties at the m-th value in any order
    (`recsys.scoring.pairs.row_best`)."""

    def __init__(self, left: sp.spmatrix, right: sp.spmatrix) -> None:
        product = sp.csr_matrix(sp.csr_matrix(left) @ sp.csr_matrix(right))
        self.matrix = product
        self.indptr, self.indices, self.data = product.indptr, product.indices, product.data
        self.cells = Cells(product)
        self.sums, self.squares = row_sums(product.data, product.indptr), row_sums(product.data**2, product.indptr)

    def at(self, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        return self.cells.at(r, c)

    def best(self, ex_rows: np.ndarray, ex_cols: np.ndarray, m: int) -> list[np.ndarray]:
        return row_best(self.matrix, ex_rows, ex_cols, m)


def row_product_of(
    left: sp.spmatrix, right: sp.spmatrix, *, dense_cells: int = DENSE_CELLS
) -> RowProduct | SparseRowProduct:
    """`RowProduct` when the batch's table (rows x columns) has at most `dense_cells` cells, else `SparseRowProduct`."""
    if left.shape[0] * right.shape[1] <= dense_cells:
        return RowProduct(left, right)
    return SparseRowProduct(left, right)


@cache
def warm_up() -> None:
    """Load (or, the first time on a machine, compile) the compiled loops for the index and value types a batch uses
    (scipy's int32 indices, float64 values), so a service's first request or a night's first batch does not wait
    for them (~10 s to compile, ~1 s to load from numba's cache). Once per process."""
    from recsys.scoring.topk import top_k_indices

    tiny = sp.csr_matrix(np.eye(2))
    tiny.indices, tiny.indptr = tiny.indices.astype(np.int32), tiny.indptr.astype(np.int32)
    RowProduct(tiny, tiny).best(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), 1)
    top_k_indices(np.zeros((1, 9)), 2)
