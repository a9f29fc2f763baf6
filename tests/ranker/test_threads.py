"""One BLAS thread around the per-user products (`recsys.scoring.threads`); user batches side by side in threads
(`recsys.compute.threads`)."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from recsys.compute import ScaleConfig, map_batches, resolve_threads
from recsys.compute.threads import machine_cores
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


def test_batches_in_threads_hold_blas_at_one_thread_and_holders_nest() -> None:
    """While batches run side by side, BLAS is on one thread in every batch (the calling thread holds the limit;
    the batches' own holds nest inside it) and gets its own counts back once the last holder has left."""
    with one_blas_thread():
        pass
    before = _blas_threads()

    def work(_: int) -> list[int]:
        with one_blas_thread():  # a nested hold, as the per-user products take one
            inside = _blas_threads()
        return inside + _blas_threads()  # still one thread after the nested hold left: the caller holds it

    seen = map_batches(work, list(range(8)), threads=2)
    assert all(set(s) == {1} for s in seen)
    assert _blas_threads() == before


def test_batches_in_threads_come_back_in_order() -> None:
    batches = [list(range(i, i + 3)) for i in range(0, 30, 3)]
    order: list[int] = []

    def work(b: list[int]) -> int:
        order.append(b[0])
        return sum(b)

    want = [sum(b) for b in batches]
    assert map_batches(work, batches, threads=1) == want and order == [b[0] for b in batches]
    assert map_batches(work, batches, threads=4) == want
    assert map_batches(work, [], threads=4) == []
    assert resolve_threads(3) == 3 and resolve_threads(0) == machine_cores() >= 1


def test_thread_counts_are_not_part_of_what_a_state_is_keyed_by() -> None:
    """`batch_threads` changes how fast, never what is built: content keys (states, heads, nights) leave it out."""
    base = ScaleConfig()
    assert base.shaping() == ScaleConfig(batch_threads=7).shaping()
    assert "batch_threads" not in base.shaping() and base.threads() == machine_cores()
    assert base.shaping() != ScaleConfig(neighbours=7).shaping()
