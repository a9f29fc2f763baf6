"""The pair helpers' products: the same bits as the whole-batch formulas they replace, and a row's value independent of
the rows computed with it (a user's scores must not depend on the batch)."""

from __future__ import annotations

import numpy as np

from recsys.scoring.pairs import quadratic_forms, row_dots, row_products


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
