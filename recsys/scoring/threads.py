"""One BLAS thread around loops of small matrix products.

The per-user work of candidate scoring (a user's ~200 candidates against their profile and recent items, a
quadratic form per user) is thousands of tiny products. Multi-threaded BLAS only adds synchronisation there, and
when other work holds the cores its threads spin-wait: measured on 2 cores with a night running beside it, a user's
interest features took 3.3 ms with two BLAS threads and 0.30 ms with one, the same values (BLAS splits a product's
output between threads, never one sum, so the thread count does not change a result).

`threadpoolctl.threadpool_limits` looks up the loaded libraries on every call (~3.5 ms here, more than a request's
whole re-rank); one controller, made on first use, switches them in ~30 us. The limit is process-wide: threads that
hold it at once (user batches side by side, a service's concurrent requests) share it, set by the first to enter and
restored by the last to leave, so BLAS gets its own counts back afterwards whatever the interleaving."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

_lock = threading.Lock()
_holders = 0
_limiter: Any = None


@cache
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """A context in which BLAS runs on one thread (the previous counts are restored when the last holder exits)."""
    global _holders, _limiter
    with _lock:
        if _holders == 0:
            _limiter = _controller().limit(limits=1, user_api="blas")
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                _limiter.restore_original_limits()
                _limiter = None
