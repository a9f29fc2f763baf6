"""One BLAS thread around loops of small matrix products.

The per-user work of candidate scoring (a user's ~200 candidates against their profile and recent items, a
quadratic form per user) is thousands of tiny products. Multi-threaded BLAS only adds synchronisation there, and
when other work holds the cores its threads spin-wait: measured on 2 cores with a night running beside it, a user's
interest features took 3.3 ms with two BLAS threads and 0.30 ms with one, the same values (BLAS splits a product's
output between threads, never one sum, so the thread count does not change a result).

`threadpoolctl.threadpool_limits` looks up the loaded libraries on every call (~3.5 ms here, more than a request's
whole re-rank); one controller, made on first use, switches them in ~30 us. The limit is process-wide while it is
held; two threads holding it at once (a service's concurrent requests) may leave BLAS on one thread afterwards, which
changes no result and is what a service's small products want anyway."""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import cache
from typing import Any


@cache
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread() -> AbstractContextManager[Any]:
    """A context in which BLAS runs on one thread (the previous counts are restored on exit)."""
    return _controller().limit(limits=1, user_api="blas")
