"""The pair helpers' products: the same bits as the whole-batch formulas they replace, and a row's value independent of
the rows computed with it (a user's scores must not depend on the batch)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.scoring.pairs import (
    Cells,
    DenseCells,
    first_allowed,
    first_not_in_rows,
    quadratic_forms,
    row_dots,
    row_products,
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


def test_dense_cells_read_an_unsorted_product_as_the_key_lookup_does() -> None:
    rng = np.random.default_rng(7)
    a = sp.random(30, 400, density=0.02, random_state=1, format="csr")
    w = sp.random(400, 400, density=0.05, random_state=2, format="csr")
    product = sp.csr_matrix(a @ w)  # a product's rows: stored entries not in column order
    assert not product.has_sorted_indices
    r, c = rng.integers(0, 30, 5000), rng.integers(-1, 400, 5000)
    r = np.concatenate([r, np.repeat(np.arange(30), np.diff(product.indptr))])  # every stored entry too
    c = np.concatenate([c, product.indices])
    got = DenseCells(product).at(r, c)
    assert np.array_equal(got, Cells(product.copy()).at(r, c))
    assert np.array_equal(got[c < 0], np.zeros((c < 0).sum()))
    assert np.array_equal(got[5000:], product.data)
