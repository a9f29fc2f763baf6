"""Serving: published snapshots of ranked lists (SQLite or Redis store) and the HTTP service over them."""

from __future__ import annotations

from pathlib import Path

from recsys.serving.service import RankingService, ServingConfig
from recsys.serving.store import RankedList, SnapshotInfo, SnapshotStore, SQLiteSnapshotStore


def open_store(cfg: ServingConfig, *, default_path: Path, retention: int = 3) -> SnapshotStore:
    """The configured snapshot store: SQLite (default: the nightly flow's store path) or Redis."""
    if cfg.backend == "redis":
        from recsys.serving.redis_store import RedisSnapshotStore

        return RedisSnapshotStore(cfg.redis_url, prefix=cfg.redis_prefix, retention=retention)
    return SQLiteSnapshotStore(cfg.store_path or default_path, retention=retention)


__all__ = [
    "RankedList",
    "RankingService",
    "SQLiteSnapshotStore",
    "ServingConfig",
    "SnapshotInfo",
    "SnapshotStore",
    "open_store",
]
