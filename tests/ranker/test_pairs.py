"""The pair helpers' products: the same bits as the whole-batch formulas they replace, and a row's value independent of
the rows computed with it (a user's scores must not depend on the batch)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.scoring.pairs import (
    PairProduct,
    RowPool,
    first_allowed,
    first_free,
    first_not_in_rows,
    quadratic_forms,
    row_best,
    row_dots,
    row_products,
    row_sums,
)


def _data(d: int = 384) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    left = rng.standard_normal((40, d)).astype(np.float32).astype(np.float64)
    right = rng.standard_normal((500, d)).astype(np.float32)
    r = np.sort(rng.integers(0, 40, 3000))
    c = rng.integers(0, 500, 3000)
    return left, right, r, c


def test_row_dots_equal_the_gathered_products_bit_for_bit_and_do_not_depend_on_the_other_pairs() -> None:
    left, right, r, c = _data()
    got = row_dots(left, r, right, c)
    assert np.array_equal(got, np.einsum("ij,ij->i", left[r], right[c].astype(np.float64)))
    one_row = r == r[1500]
    alone = row_dots(left, r[one_row], right, c[one_row])
    assert np.array_equal(alone, got[one_row])
    assert np.array_equal(row_dots(left, r[:1], right, c[:1]), got[:1])
    assert row_dots(left, r[:0], right, c[:0]).shape == (0,)


def test_row_products_and_quadratic_forms_do_not_depend_on_the_batch() -> None:
    left, right, _, _ = _data()
    vector = right[0].astype(np.float64)
    gram = right.T.astype(np.float64) @ right.astype(np.float64)
    whole = row_products(left, vector), quadratic_forms(left, gram)
    for i in (0, 17, 39):
        assert row_products(left[i : i + 1], vector)[0] == whole[0][i]
        assert quadratic_forms(left[i : i + 1], gram)[0] == whole[1][i]
    np.testing.assert_allclose(whole[0], left @ vector, rtol=1e-12)
    np.testing.assert_allclose(whole[1], np.einsum("ij,jk,ik->i", left, gram, left), rtol=1e-12)
    assert quadratic_forms(left[:0], gram).shape == (0,)


def _first_not_in(ordered: np.ndarray, skip: np.ndarray, n: int) -> np.ndarray:
    """The per-row reference: the first n values of `ordered`, in its order, not in `skip`."""
    return ordered[~np.isin(ordered, skip)][:n]


def test_first_not_in_rows_equals_the_per_row_rule() -> None:
    rng = np.random.default_rng(5)
    ordered = rng.permutation(3000)
    rows, values = [], []
    for i in range(30):  # rows with nothing excluded, a few, thousands, the whole head, values outside `ordered`
        size = [0, 3, 2500, 40, 0, 700][i % 6]
        pick = rng.choice(3100, size=size, replace=False) if i % 6 != 3 else ordered[:40]
        rows.append(np.full(len(pick), i))
        values.append(pick)
    ex_r, ex_v = np.concatenate(rows), np.concatenate(values)
    for n in (1, 10, 100, 3000):
        got = first_not_in_rows(ordered, 30, ex_r, ex_v, n)
        assert len(got) == 30
        for i in range(30):
            assert np.array_equal(got[i], _first_not_in(ordered, ex_v[ex_r == i], n)), (n, i)
    assert [len(g) for g in first_not_in_rows(ordered, 3, ex_r[:0], ex_v[:0], 5)] == [5, 5, 5]
    assert first_not_in_rows(ordered, 0, ex_r, ex_v, 5) == []


def test_first_allowed_keeps_order_and_drops_padding_and_exclusions() -> None:
    values = np.array([[5, 3, -1, 9, 1], [2, 2000, 7, -1, -1], [-1, -1, -1, -1, -1]])
    got = first_allowed(values, np.array([0, 1, 1]), np.array([3, 2000, 4]), 2)
    assert [g.tolist() for g in got] == [[5, 9], [2, 7], []]
    assert first_allowed(values[:0], np.array([0]), np.array([3]), 2) == []


def test_pair_products_take_either_side_with_the_same_bits_as_the_whole_product() -> None:
    rng = np.random.default_rng(11)
    n_items = 300
    # top-k by column (k = 5): every column holds 5 entries; item 0 is among every column's top, so its row is full
    rows = np.concatenate([rng.choice(np.arange(1, n_items), 4, replace=False) for _ in range(n_items)])
    rows = np.concatenate([np.zeros(n_items, dtype=np.int64), rows])
    cols = np.concatenate([np.arange(n_items), np.repeat(np.arange(n_items), 4)])
    sim = sp.csr_matrix((rng.random(len(rows)), (rows, cols)), shape=(n_items, n_items))
    product = PairProduct(sim)
    light = sp.random(20, n_items, density=0.02, random_state=3, format="lil")  # items 1.. only: cheap rows
    light[:, 0] = 0
    heavy = light.copy()
    light = sp.csr_matrix(light)
    heavy[:, 0] = 1.5  # everyone saw item 0: its full row makes the column side cheaper for few candidates
    heavy = sp.csr_matrix(heavy)
    for history, few in ((light, False), (heavy, True)):
        r = np.sort(rng.integers(0, 20, 60 if few else 3000))
        c = rng.integers(0, n_items, len(r))
        expected = (history @ sim).toarray()[r, c]
        got = product.at(history, r, c)
        assert np.array_equal(got, expected)  # bit for bit, whichever side it took
        row_side = product.row_entries[history.indices].sum() <= product.col_entries[np.unique(c)].sum()
        assert row_side != few


def test_row_sums_sum_each_stored_row_and_leave_empty_rows_at_zero() -> None:
    m = sp.csr_matrix(np.array([[0.0, 1.5, 2.0], [0, 0, 0], [3.0, 0, 0], [0, 0, 0]]))
    assert np.array_equal(row_sums(m.data, m.indptr), [3.5, 0.0, 3.0, 0.0])
    assert np.array_equal(row_sums(m.data**2, m.indptr), [6.25, 0.0, 9.0, 0.0])
    assert np.array_equal(row_sums(np.zeros(0), np.zeros(3, dtype=np.int64)), [0.0, 0.0])


def test_row_best_keeps_each_rows_m_largest_entries_outside_its_exclusions() -> None:
    rng = np.random.default_rng(5)
    m = 8
    matrix = sp.random(30, 500, density=0.1, random_state=4, format="csr")
    matrix.data = rng.standard_normal(matrix.nnz)  # distinct values, negatives too
    matrix.data[matrix.indptr[3] : matrix.indptr[4]] = 0  # an empty row
    matrix.eliminate_zeros()
    ex_r, ex_c = [], []
    for i in range(30):  # each row's largest entry, some random stored ones and some columns it does not store
        cols = matrix.indices[matrix.indptr[i] : matrix.indptr[i + 1]]
        vals = matrix.data[matrix.indptr[i] : matrix.indptr[i + 1]]
        picked = np.unique(np.concatenate([cols[np.argsort(-vals)[:1]], rng.choice(cols, min(5, len(cols))), [499]]))
        ex_r += [i] * len(picked)
        ex_c += picked.tolist()
    ex_r, ex_c = np.asarray(ex_r), np.asarray(ex_c)
    got = row_best(matrix, ex_r, ex_c, m)
    for i in range(30):
        cols = matrix.indices[matrix.indptr[i] : matrix.indptr[i + 1]]
        vals = matrix.data[matrix.indptr[i] : matrix.indptr[i + 1]]
        keep = ~np.isin(cols, ex_c[ex_r == i])
        expected = cols[keep][np.argsort(-vals[keep])[:m]]
        assert sorted(got[i].tolist()) == sorted(expected.tolist()), i
    assert len(got[3]) == 0 and all(len(g) == m for i, g in enumerate(got) if i != 3)


def test_row_pool_best_is_each_rows_k_best_by_value_then_column_without_the_excluded_pairs() -> None:
    rng = np.random.default_rng(9)
    n_rows, k = 25, 6
    parts = []
    for density in (0.3, 0.05):  # a wide part (support-like) and a narrow one, columns disjoint within a row
        m = sp.random(n_rows, 400, density=density, random_state=int(density * 100), format="csr")
        parts.append(m)
    second = parts[1] - parts[1].multiply(parts[0] != 0)  # no column twice in a row
    second.eliminate_zeros()
    pool_parts = [
        (np.repeat(np.arange(n_rows), np.diff(m.indptr)), m.indices.astype(np.int64)) for m in (parts[0], second)
    ]
    pool = RowPool(pool_parts, n_rows)
    value = np.round(rng.standard_normal(len(pool.r)), 1)  # many exact ties
    ex_r = np.sort(rng.integers(0, n_rows, 60))
    ex_c = rng.choice(pool.c, 60)
    for exclude in (None, (ex_r, ex_c)):
        r, c, v = pool.best(value, k, exclude=exclude)
        for i in range(n_rows):
            mine = np.flatnonzero(pool.r == i)
            if exclude is not None:
                mine = mine[~np.isin(pool.c[mine], ex_c[ex_r == i])]
            ranked = sorted(zip((-value[mine]).tolist(), pool.c[mine].tolist(), strict=True))[:k]
            got = list(zip((-v[r == i]).tolist(), c[r == i].tolist(), strict=True))
            assert got == ranked, i


def test_first_free_is_the_first_values_in_no_skipped_array() -> None:
    rng = np.random.default_rng(2)
    for n_values, n in ((50, 5), (1000, 20), (30, 40)):
        skip = [rng.integers(0, n_values, 25), rng.integers(0, 2 * n_values, 5), np.zeros(0, dtype=np.int64)]
        expected = [v for v in range(n_values) if not any(v in s for s in skip)][:n]
        assert first_free(n_values, skip, n).tolist() == expected
    assert first_free(10, [np.arange(10)], 3).tolist() == []
