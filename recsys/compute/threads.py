"""User batches side by side in one process: a thread pool over independent batches.

A batch's work is mostly numpy, scipy, faiss, polars and LightGBM calls, which release the GIL, with some Python
between them; two batches in two threads keep both cores of a small machine busy where one batch leaves the second
mostly idle (the 100k-user model's lists: 2.46 -> 1.9 ms per user on 2 cores, the same rows). Results come back in
the batches' order and each batch's result depends on that batch alone, so the output is the same for any number of
threads. Per-state tables that the first batch would make lazily must be made before the pool starts (callers call
`prepare()`), so no two threads build them at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from recsys.scoring.threads import one_blas_thread

T = TypeVar("T")
R = TypeVar("R")


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int) -> int:
    """`threads` as configured: 0 means the machine's cores."""
    return threads if threads > 0 else machine_cores()


def map_batches(fn: Callable[[T], R], batches: Sequence[T], *, threads: int = 1) -> list[R]:
    """`fn` over `batches`, results in the batches' order; with `threads` > 1, that many batches at a time in a thread
    pool."""
    if threads <= 1 or len(batches) <= 1:
        return [fn(b) for b in batches]
    # the batches are the parallelism: BLAS on one thread meanwhile (set here, in the calling thread, where OpenBLAS
    # applies it to every thread; a limit first set inside a pool thread may not hold there)
    with one_blas_thread(), ThreadPoolExecutor(min(threads, len(batches)), thread_name_prefix="batch") as pool:
        return list(pool.map(fn, batches))
