"""One BLAS thread around the per-user products (`recsys.scoring.threads`)."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from recsys.encoder.interest import UserInterests, interest_feature_arrays
from recsys.scoring.pairs import quadratic_forms
from recsys.scoring.threads import _controller, one_blas_thread


def _blas_threads() -> list[int]:
    """The thread counts of the BLAS libraries the limiter switches (those loaded when it was first used: numpy's
    always; a library loaded later, e.g. faiss' own, is not one the per-user products call)."""
    return [lib["num_threads"] for lib in _controller().info() if lib["user_api"] == "blas"]


def test_one_blas_thread_holds_one_thread_and_restores_the_counts() -> None:
    numpy_blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas" and "numpy" in lib["filepath"]]
    assert numpy_blas, "numpy's own BLAS is not visible to threadpoolctl"
    with one_blas_thread():  # the controller exists from here on
        pass
    assert {lib["filepath"] for lib in numpy_blas} <= {lib["filepath"] for lib in _controller().info()}
    with threadpool_limits(2, "blas"):
        before = _blas_threads()
        assert before and max(before) == 2
        with one_blas_thread():
            assert set(_blas_threads()) == {1}
        assert _blas_threads() == before


def test_per_user_products_give_the_same_values_on_any_thread_count() -> None:
    """What runs under one thread equals the same products with BLAS's threads (and the forms' definitions)."""
    rng = np.random.default_rng(0)
    x, gram = rng.standard_normal((50, 64)), rng.standard_normal((64, 64))
    with threadpool_limits(2, "blas"):
        many = [float(row @ gram @ row) for row in x]
        assert _blas_threads() and max(_blas_threads()) == 2  # the limit is lifted again after the call
        assert np.array_equal(quadratic_forms(x, gram), many)
        assert max(_blas_threads()) == 2
    vectors = rng.standard_normal((5000, 384)).astype(np.float32)
    users = 4
    interests = UserInterests(
        [f"u{i}" for i in range(users)],
        rng.standard_normal((users, 384)),
        rng.standard_normal((users, 384)),
        rng.integers(0, 5000, (users, 10)),
        {f"u{i}": i for i in range(users)},
    )
    user_rows = np.repeat(np.arange(users), 2000)
    item_rows = rng.integers(0, 5000, len(user_rows))
    got = interest_feature_arrays(interests, vectors, user_rows, item_rows)
    for u in range(users):
        at = user_rows == u
        cand = vectors[item_rows[at]].astype(np.float64)
        with threadpool_limits(2, "blas"):
            sims = cand @ vectors[interests.recent[u]].T.astype(np.float64)
            want = {
                "im_profile": cand @ interests.profile[u],
                "im_negative": cand @ interests.negative[u],
                "im_last": sims[:, 0],
                "im_recent_max": sims.max(axis=1),
                "im_recent_mean": sims.mean(axis=1),
            }
        for name, values in want.items():
            assert np.array_equal(got[name][at], values.astype(np.float32)), name
