"""The compute engines (see the package docstring)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")
R = TypeVar("R")


class ComputeConfig(BaseModel, frozen=True, extra="forbid"):
    """`[compute]`: where the partitioned steps run."""

    engine: Literal["local", "dask"] = Field("local", description="local: this process; dask: a Dask cluster")
    address: str | None = Field(
        None, description="dask: the scheduler's address (tcp://host:8786); none = start a LocalCluster"
    )
    workers: int = Field(2, ge=1, description="dask without an address: worker processes of the LocalCluster")
    threads_per_worker: int = Field(1, ge=1, description="dask without an address: threads per worker process")
    partition_users: int = Field(20_000, ge=1, description="users per partition of the list building")
    shard_items: int = Field(
        50_000, ge=1, description="dask: item texts per embedding shard (fewer texts to encode: one pass here)"
    )


class Engine(Protocol):
    """Maps a function over partitions; results come back in the partitions' order."""

    name: str

    def map(self, fn: Callable[[T], R], parts: Sequence[T], *, done: Callable[[int], None] | None = None) -> list[R]:
        """`fn` over `parts`; `done(i)` is called as partition i finishes (in the order they finish)."""
        ...

    def where(self) -> list[str]:
        """Where the last `map`'s partitions ran (one entry per partition: 'local' or a worker's address)."""
        ...

    def slots(self) -> int:
        """How many partitions run at once (1 here; a cluster's worker threads)."""
        ...


class LocalEngine:
    """Every partition in this process, in order."""

    name = "local"

    def __init__(self) -> None:
        self._where: list[str] = []

    def map(self, fn: Callable[[T], R], parts: Sequence[T], *, done: Callable[[int], None] | None = None) -> list[R]:
        self._where = ["local"] * len(parts)
        out = []
        for i, p in enumerate(parts):
            out.append(fn(p))
            if done:
                done(i)
        return out

    def where(self) -> list[str]:
        return list(self._where)

    def slots(self) -> int:
        return 1


def _on_worker(fn: Callable[[T], R], part: T) -> tuple[R, str]:
    from distributed import get_worker

    return fn(part), get_worker().address


class DaskEngine:
    """Partitions as tasks on a `distributed` cluster (`client`)."""

    name = "dask"

    def __init__(self, client: Any) -> None:
        self.client = client
        self._where: list[str] = []

    def map(self, fn: Callable[[T], R], parts: Sequence[T], *, done: Callable[[int], None] | None = None) -> list[R]:
        from distributed import as_completed

        futures = [self.client.submit(_on_worker, fn, p, pure=False) for p in parts]
        index = {f.key: i for i, f in enumerate(futures)}
        results: dict[int, tuple[R, str]] = {}
        for future in as_completed(futures):
            i = index[future.key]
            results[i] = future.result()  # raises the partition's error here
            if done:
                done(i)
        ordered = [results[i] for i in range(len(futures))]
        self._where = [w for _, w in ordered]
        return [r for r, _ in ordered]

    def where(self) -> list[str]:
        return list(self._where)

    def slots(self) -> int:
        return max(1, sum(self.client.nthreads().values()))


def partitions(items: Sequence[T], size: int, *, slots: int = 1) -> list[Sequence[T]]:
    """`items` in consecutive partitions of at most `size`; with `slots` > 1 (partitions run at once), as many
    partitions as whole rounds of the slots need, of equal size (within one), so that no slot idles through a last,
    partial round while another still works (100k users by 20k on 2 workers: 6 of 16,667, not 5 of 20,000)."""
    n = -(-len(items) // max(1, size))
    if slots > 1 and n % slots:
        n += slots - n % slots
    if slots <= 1 or n == 0:
        return [items[i : i + size] for i in range(0, len(items), size)]
    bounds = [len(items) * i // n for i in range(n + 1)]  # n slices whose sizes differ by at most one
    return [items[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@contextmanager
def open_engine(cfg: ComputeConfig | None = None) -> Iterator[Engine]:
    """The configured engine for the duration of the block (a LocalCluster it started is closed after it)."""
    cfg = cfg or ComputeConfig()
    if cfg.engine == "local":
        yield LocalEngine()
        return
    from distributed import Client, LocalCluster

    if cfg.address:
        with Client(cfg.address) as client:
            yield DaskEngine(client)
        return
    # worker processes inherit the environment; keep their BLAS to their own threads
    env = {"OMP_NUM_THREADS": str(cfg.threads_per_worker), "MKL_NUM_THREADS": str(cfg.threads_per_worker)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        cluster = LocalCluster(
            n_workers=cfg.workers,
            threads_per_worker=cfg.threads_per_worker,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        )
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    with cluster, Client(cluster) as client:
        yield DaskEngine(client)
