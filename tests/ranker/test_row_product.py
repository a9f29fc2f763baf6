"""The compiled sparse-row product (`recsys.scoring.row_product`) against scipy's product and numpy's sums."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.scoring import kernels
from recsys.scoring.pairs import row_sums
from recsys.scoring.row_product import RowProduct, SparseRowProduct, row_product_of, warm_up


def _model(n_items: int, k: int, seed: int) -> sp.csr_matrix:
    """A neighbour-form item x item model: k entries per column, drawn mostly from the first items (popular rows
    long, as EASE's are at scale), values of both signs."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1)
    p /= p.sum()
    rows = np.concatenate([rng.choice(n_items, k, replace=False, p=p) for _ in range(n_items)])
    cols = np.repeat(np.arange(n_items), k)
    return sp.csr_matrix((rng.standard_normal(len(rows)), (rows, cols)), shape=(n_items, n_items))


def _histories(n_users: int, n_items: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 12, n_users)
    sizes[0] = 0  # a user without history: an empty row
    rows = np.repeat(np.arange(n_users), sizes)
    cols = rng.integers(0, n_items, len(rows))
    h = sp.csr_matrix((rng.uniform(0.5, 2.0, len(rows)), (rows, cols)), shape=(n_users, n_items))
    h.sum_duplicates()
    return h


@pytest.mark.parametrize("index_type", [np.int32, np.int64])
def test_the_table_holds_scipys_product_bit_for_bit_with_its_stored_entries(index_type: type) -> None:
    b = _model(600, 20, seed=1)
    a = _histories(30, 600, seed=2)
    b.indices, b.indptr = b.indices.astype(index_type), b.indptr.astype(index_type)
    got = RowProduct(a, b)
    expected = sp.csr_matrix(a @ b)
    assert np.array_equal(got.table, expected.toarray())  # every value, bit for bit
    expected.sort_indices()  # the stored entries as CSR in column order, values bit for bit
    assert np.array_equal(got.indptr, expected.indptr) and np.array_equal(got.indices, expected.indices)
    assert np.array_equal(got.data, expected.data)
    # the sums: pairwise over each row's stored values in column order (scipy's product lists them otherwise)
    np.testing.assert_allclose(got.sums, row_sums(expected.data, expected.indptr), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(got.squares, row_sums(expected.data**2, expected.indptr), rtol=1e-13)
    assert np.diff(got.indptr).max() > 128  # rows long enough for the pairwise sum's pairs of blocks
    r = np.repeat(np.arange(30), 600)
    c = np.tile(np.arange(600), 30)
    c[::7] = -1
    assert np.array_equal(got.at(r, c), np.where(c >= 0, expected.toarray()[r, np.maximum(c, 0)], 0.0))


def test_the_pairwise_sum_adds_blocks_then_pairs_of_blocks() -> None:
    rng = np.random.default_rng(3)
    for n in [*range(0, 40), 127, 128, 129, 255, 256, 257, 1000, 4099, 30_001]:
        x = rng.standard_normal(n) * 10.0 ** rng.uniform(-4, 6, n)
        got = kernels.pairwise_sum(x, 0, n)
        assert got == pytest.approx(np.add.reduce(x), rel=1e-13, abs=1e-9), n
        if n < 8:
            assert got == sum(x.tolist()), n  # a running sum below one block
    x = np.full(1 << 20, 0.1)
    assert abs(kernels.pairwise_sum(x, 0, len(x)) - 0.1 * len(x)) < 1e-6  # a running sum is off by ~1e-4 here


def test_an_exact_cancellation_is_not_stored_and_a_column_back_at_zero_is_listed_once() -> None:
    b = sp.csr_matrix(np.array([[1.0, 2.0, 0.0], [-1.0, 0.0, 3.0], [0.5, 0.0, 0.0]]))
    # user 0: items 0 and 1 cancel at column 0; user 1: item 1 alone; user 2: items 0, 1, 2: column 0 goes 1, 0, 0.5
    a = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]))
    got = RowProduct(a, b)
    assert got.table.tolist() == [[0.0, 2.0, 3.0], [-1.0, 0.0, 3.0], [0.5, 2.0, 3.0]]
    assert not np.signbit(got.table[0, 0])  # +0.0, as an unstored entry reads
    assert np.diff(got.indptr).tolist() == [2, 2, 3]
    assert got.indices.tolist() == [1, 2, 0, 2, 0, 1, 2] and got.data.tolist() == [2, 3, -1, 3, 0.5, 2, 3]
    assert got.sums.tolist() == [5.0, 2.0, 5.5] and got.squares.tolist() == [13.0, 10.0, 13.25]
    mean, sd = got.moments(np.array([0]), np.array([2.0]), np.array([2, 3, 3]))  # user 0 saw column 1
    assert mean.tolist() == pytest.approx([1.5, 2.0 / 3, 5.5 / 3])
    assert sd[0] == pytest.approx(1.5)


def test_best_keeps_each_rows_m_largest_stored_entries_outside_its_exclusions() -> None:
    b = _model(500, 15, seed=4)
    b.data = np.round(b.data, 1)  # many equal values: ties at the cut
    a = _histories(40, 500, seed=5)
    a.data[:] = 1.0
    product = RowProduct(a, b)
    reference = sp.csr_matrix(a @ b)
    rng = np.random.default_rng(6)
    ex_r, ex_c = [], []
    for i in range(40):
        cols = reference.indices[reference.indptr[i] : reference.indptr[i + 1]]
        picked = np.unique(np.concatenate([rng.choice(cols, min(4, len(cols))), [499]])) if len(cols) else []
        ex_r += [i] * len(picked)
        ex_c += list(picked)
    ex_rows, ex_cols = np.asarray(ex_r, dtype=np.int64), np.asarray(ex_c, dtype=np.int64)
    for m in (0, 1, 10, 400):
        got = product.best(ex_rows, ex_cols, m)
        assert len(got) == 40
        for i in range(40):
            lo, hi = reference.indptr[i], reference.indptr[i + 1]
            cols, vals = reference.indices[lo:hi], reference.data[lo:hi]
            keep = ~np.isin(cols, ex_cols[ex_rows == i])
            order = np.lexsort((cols[keep], -vals[keep]))  # best first, ties by the smaller column
            assert got[i].tolist() == cols[keep][order][:m].tolist(), (m, i)
        if m == 10:  # the scipy path keeps the same entries wherever the m-th value has no tie past the cut
            loose = SparseRowProduct(a, b).best(ex_rows, ex_cols, m)
            untied = 0
            for i in range(40):
                lo, hi = reference.indptr[i], reference.indptr[i + 1]
                keep = ~np.isin(reference.indices[lo:hi], ex_cols[ex_rows == i])
                vals = np.sort(reference.data[lo:hi][keep])[::-1]
                if len(vals) <= m or vals[m - 1] != vals[m]:
                    untied += 1
                    assert set(got[i].tolist()) == set(loose[i].tolist()), i
            assert untied >= 20


def test_best_never_picks_an_unstored_zero_over_negative_values() -> None:
    b = sp.csr_matrix(np.array([[-1.0, 0.0, -2.0, 0.0], [0.0, 0.0, 0.0, -0.5]]))
    a = sp.csr_matrix(np.array([[1.0, 1.0]]))
    got = RowProduct(a, b).best(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 3)
    assert got[0].tolist() == [3, 0, 2]  # -0.5, -1, -2; columns 1 (never stored) left out


def test_the_sparse_form_reads_the_same_rows() -> None:
    b = _model(400, 10, seed=7)
    a = _histories(25, 400, seed=8)
    dense, loose = RowProduct(a, b), SparseRowProduct(a, b)
    r = np.repeat(np.arange(25), 400)
    c = np.tile(np.arange(400), 25)
    assert np.array_equal(dense.at(r, c), loose.at(r, c))
    seen_r = np.repeat(np.arange(25), np.diff(a.indptr))
    n_valid = np.full(25, 400) - np.bincount(seen_r, minlength=25)
    for x, y in zip(
        dense.moments(seen_r, dense.at(seen_r, a.indices), n_valid),
        loose.moments(seen_r, loose.at(seen_r, a.indices), n_valid),
        strict=True,
    ):
        np.testing.assert_allclose(x, y, rtol=1e-12)
    assert isinstance(row_product_of(a, b, dense_cells=25 * 400), RowProduct)
    assert isinstance(row_product_of(a, b, dense_cells=25 * 400 - 1), SparseRowProduct)


def test_warm_up_readies_the_loops_for_scipys_index_types() -> None:
    warm_up()
    for loop in (kernels.row_product, kernels.best_stored, kernels.top_k_rows):
        assert loop.signatures, loop  # compiled (or loaded from the cache) for at least one signature
    a = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 2.0]]))  # int32 indices, float64 values: a batch's types
    before = len(kernels.row_product.signatures)
    RowProduct(a, a)
    assert len(kernels.row_product.signatures) == before  # no new compilation for a real batch
