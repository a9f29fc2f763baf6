"""The collaborative models' sparse forms (`[scale]`): each reduces to the exact dense model where its
approximation is lifted, and the selection kernels agree with a full stable sort."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp

from recsys.baselines import EASE, SAR, EASELowPass, ItemKNN, LowPass, ScaleConfig, scalable
from recsys.baselines.scalable import lowpass_components, neighbour_ease, top_k_per_column
from recsys.scoring.topk import top_k_indices

FORCED = ScaleConfig(dense_item_limit=0)


def _dense_ease(x: sp.csr_matrix, l2: float) -> np.ndarray:
    g = (x.T @ x).toarray()
    p = np.linalg.inv(g + l2 * np.eye(g.shape[0]))
    b = p / (-np.diag(p))
    np.fill_diagonal(b, 0.0)
    return b


def test_neighbour_ease_with_every_item_as_neighbour_is_ease():
    rng = np.random.default_rng(0)
    x = sp.csr_matrix((rng.random((300, 15)) < 0.5).astype(float))
    g = (x.T @ x).toarray()
    assert (g > 0).all()  # every pair co-occurs, so every other item is a neighbour
    weights = neighbour_ease(x, 20.0, neighbours=14).toarray()
    np.testing.assert_allclose(weights, _dense_ease(x, 20.0), atol=1e-5)


def test_neighbour_ease_keeps_k_weights_per_item_from_its_strongest_co_occurrences():
    rng = np.random.default_rng(1)
    x = sp.csr_matrix((rng.random((400, 60)) < 0.1).astype(float))
    w = neighbour_ease(x, 10.0, neighbours=5).tocsc()
    g = (x.T @ x).toarray()
    np.fill_diagonal(g, -1)
    for j in range(60):
        rows = w.indices[w.indptr[j] : w.indptr[j + 1]]
        assert len(rows) <= 5 and j not in rows
        # the chosen neighbours are among the items co-occurring most with j
        if len(rows):
            assert g[rows, j].min() >= np.sort(g[:, j])[-5]


def test_a_grid_fitted_in_one_pass_gives_each_l2_the_weights_of_its_own_fit(monkeypatch):
    """`neighbour_ease(..., grid=...)`: the other l2 values are fitted in the same pass and remembered; each equals a
    separate fit bit for bit, and the grid's later calls are lookups (no further pass)."""
    from recsys.baselines import scalable

    rng = np.random.default_rng(2)
    x = sp.csr_matrix((rng.random((500, 700)) < 0.03).astype(float))
    grid = (50.0, 200.0, 1000.0)
    scalable._MEMO.clear()
    alone = {v: scalable._neighbour_ease(x, [v], 20)[0] for v in grid}
    passes = []
    real = scalable._neighbour_ease
    monkeypatch.setattr(scalable, "_neighbour_ease", lambda *a: passes.append(a[1]) or real(*a))
    for v in grid:
        got = neighbour_ease(x, v, 20, grid=grid)
        assert got.nnz == alone[v].nnz and (got != alone[v]).nnz == 0
        assert np.array_equal(got.data, alone[v].data) and np.array_equal(got.indices, alone[v].indices)
    assert passes == [[50.0, 200.0, 1000.0]]  # one pass fitted the whole grid
    assert len({id(neighbour_ease(x, v, 20)) for v in grid}) == 3  # remembered, one fit per l2
    # a memo that holds only one fit: the grid is not fitted ahead (nothing would be kept)
    scalable._MEMO.clear()
    passes.clear()
    monkeypatch.setattr(scalable, "MEMO_BYTES", 700 * 20 * 12)
    neighbour_ease(x, 50.0, 20, grid=grid)
    assert passes == [[50.0]]
    scalable._MEMO.clear()


def test_capped_rows_keep_each_rows_largest_weights_by_magnitude_ties_by_column():
    w = sp.csr_matrix(
        np.array(
            [
                [0.0, -3.0, 1.0, 2.0, -1.0],  # 4 entries: keeps -3 and 2
                [0.5, 0.0, 0.0, 0.0, 0.0],  # short: kept whole
                [0.0, 0.0, 0.0, 0.0, 0.0],  # empty
                [1.0, -1.0, 1.0, 0.0, 0.2],  # ties at the cut: the smaller columns
            ]
        )
    )
    capped = scalable.cap_rows(w, 2)
    assert capped.shape == w.shape
    np.testing.assert_array_equal(
        capped.toarray(),
        [[0, -3, 0, 2, 0], [0.5, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, -1, 0, 0, 0]],
    )
    assert (scalable.cap_rows(w, 0) != w).nnz == 0  # 0: uncapped
    assert (scalable.cap_rows(w, 4) != w).nnz == 0


def test_ease_fanout_bounds_every_items_row_and_keeps_its_strongest_weights(synthetic):
    """`[scale] ease_fanout`: the sparse EASE's rows hold at most that many weights, the largest of the uncapped
    fit's row (same values), so a user's score row is bounded by their history, not the catalog."""
    rng = np.random.default_rng(4)
    popular = rng.random((600, 300)) < np.linspace(0.3, 0.005, 300)  # a few items co-occur with everything
    x = sp.csr_matrix(popular.astype(float))
    scalable._MEMO.clear()
    full = neighbour_ease(x, 10.0, 30)
    capped = neighbour_ease(x, 10.0, 30, fanout=40)
    assert np.diff(full.indptr).max() > 40 >= np.diff(capped.indptr).max()
    assert neighbour_ease(x, 10.0, 30) is full  # each fanout remembered under its own key
    for i in range(x.shape[1]):
        lo, hi = full.indptr[i], full.indptr[i + 1]
        values = np.sort(np.abs(full.data[lo:hi]))[::-1][:40]
        got = capped.getrow(i)
        np.testing.assert_array_equal(np.sort(np.abs(got.data))[::-1], values)
        np.testing.assert_array_equal(got.data, full[i, got.indices].toarray().ravel())
    train = synthetic.interactions
    wide = EASE(l2=200.0, scale=FORCED).fit(train).arrays.weights
    fanout = int(np.diff(wide.indptr).max()) // 2
    model = EASE(l2=200.0, scale=ScaleConfig(dense_item_limit=0, ease_fanout=fanout)).fit(train)
    assert 0 < np.diff(model.arrays.weights.indptr).max() <= fanout < model.arrays.weights.shape[1]
    users = train["user_id"].unique().sort().to_list()[:50]
    assert model.recommend(users, k=10).height == 500  # lists from the capped weights
    scalable._MEMO.clear()


def test_sparse_lowpass_spans_the_dense_eigenvectors():
    rng = np.random.default_rng(2)
    x = sp.csr_matrix((rng.random((500, 80)) < 0.15).astype(float))
    sparse = lowpass_components(x, 6)
    _, v = scipy.linalg.eigh((x.T @ x).toarray(), subset_by_index=[74, 79])
    dense = v[:, ::-1]
    np.testing.assert_allclose(sparse @ sparse.T, dense @ dense.T, atol=1e-6)


@pytest.mark.parametrize("model", [ItemKNN, SAR])
def test_chunked_similarity_with_every_neighbour_kept_is_the_exact_one(model, synthetic):
    train = synthetic.interactions
    big = ScaleConfig(dense_item_limit=0, neighbours=10_000)
    kwargs = {"neighbours": 10_000} if model is ItemKNN else {}
    exact = model(**kwargs).fit(train).similarity_.toarray()
    chunked = model(scale=big, **kwargs).fit(train).similarity_.toarray()
    np.fill_diagonal(exact, 0.0)  # the chunked form never keeps an item as its own neighbour
    np.testing.assert_allclose(chunked, exact, atol=1e-12)


def _reference_top_k(m: sp.spmatrix, k: int, *, skip_diagonal: bool) -> np.ndarray:
    """Each column's k largest stored entries, ties by the smaller row, from a full sort per column (dense)."""
    c, out = sp.coo_matrix(m), np.zeros(m.shape)
    for j in range(m.shape[1]):
        entries = sorted((-v, r) for r, cj, v in zip(c.row, c.col, c.data, strict=True) if cj == j)
        entries = [(v, r) for v, r in entries if not (skip_diagonal and r == j)][:k]
        for v, r in entries:
            out[r, j] = -v
    return out


@pytest.mark.parametrize("skip_diagonal", [True, False])
def test_top_k_per_column_keeps_each_columns_k_largest_with_ties_to_the_smaller_row(skip_diagonal):
    rng = np.random.default_rng(3)
    for _ in range(30):
        n = int(rng.integers(2, 25))
        m = sp.random(n, n, density=float(rng.uniform(0.1, 1.0)), random_state=rng, format="csr")
        m.data = np.ceil(m.data * 3)  # three distinct values: many ties at every cut
        for k in (0, 1, 2, 4, 50):
            got = top_k_per_column(m, k, skip_diagonal=skip_diagonal)
            assert (got.getnnz(axis=0) <= k).all()
            np.testing.assert_array_equal(got.toarray(), _reference_top_k(m, k, skip_diagonal=skip_diagonal))


def test_top_k_per_column_refuses_nan():
    with pytest.raises(ValueError, match="NaN"):
        top_k_per_column(sp.csr_matrix(np.array([[1.0, np.nan], [2.0, 3.0]])), 1)


def test_chunked_similarity_keeps_each_items_k_most_similar(synthetic, monkeypatch):
    """Chunks of 7 targets, 3 neighbours kept: each column holds the exact similarity's 3 largest off-diagonal
    entries (ties to the smaller item)."""
    monkeypatch.setattr(scalable, "ITEM_CHUNK", 7)
    train = synthetic.interactions
    exact = ItemKNN(neighbours=10_000).fit(train).similarity_
    chunked = ItemKNN(scale=ScaleConfig(dense_item_limit=0, neighbours=3), neighbours=3).fit(train).similarity_
    want = _reference_top_k(sp.csr_matrix(exact), 3, skip_diagonal=True)
    np.testing.assert_allclose(chunked.toarray(), want, atol=1e-12)
    assert chunked.getnnz(axis=0).max() == 3


def test_forced_sparse_models_recommend_close_to_the_exact_ones(synthetic):
    """On the default synthetic data the sparse forms rank nearly as the dense ones (top-10 overlap)."""
    train = synthetic.interactions
    users = train["user_id"].unique().sort().to_list()[:100]
    for make in (
        lambda s: EASE(l2=200.0, scale=s),
        lambda s: LowPass(factors=16, scale=s),
        lambda s: EASELowPass(l2=200.0, scale=s),
    ):
        exact = make(ScaleConfig()).fit(train).recommend(users, k=10)
        sparse = make(FORCED).fit(train).recommend(users, k=10)
        a = set(zip(exact["user_id"], exact["item_id"], strict=True))
        b = set(zip(sparse["user_id"], sparse["item_id"], strict=True))
        assert len(a & b) / len(a) > 0.7


def test_top_k_indices_is_a_stable_descending_sort():
    rng = np.random.default_rng(3)
    for trial in range(200):
        n, m = int(rng.integers(1, 12)), int(rng.integers(1, 300))
        k = int(rng.integers(1, m + 1))
        s = rng.integers(0, 4, (n, m)).astype(float)  # many ties, also at the k-th place
        s[rng.random((n, m)) < 0.2] = -np.inf
        if trial % 3 == 0:
            s[rng.random((n, m)) < 0.1] = np.nan
        reference = np.argsort(-np.where(np.isnan(s), -np.inf, s), axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(top_k_indices(s, k), reference)
