"""The snapshot store on Redis, for teams that serve from Redis: same interface as the SQLite store.

Keys under a prefix (default `recsys`):
    {p}:current               id of the snapshot being served
    {p}:snapshots             sorted set of ready snapshot ids (score: creation time)
    {p}:building              sorted set of snapshots being written (score: start time)
    {p}:snap:{id}:meta        JSON of the snapshot's SnapshotInfo
    {p}:snap:{id}:lists       hash user_id -> JSON [items, scores]

A publish writes the whole hash first, then in one MULTI/EXEC marks the snapshot ready and moves `current`.
Reads of one user resolve the pointer and read the list in one Lua script (atomic on the server), so a reader
sees the old snapshot or the new one, never a mix.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from datetime import datetime
from typing import cast

import polars as pl

from recsys.data import schema as S
from recsys.serving.store import (
    FALLBACK_USER,
    Lists,
    RankedList,
    SnapshotInfo,
    decode_list,
    encoded_chunks,
    new_snapshot,
)

_GET = """
local sid = redis.call('GET', KEYS[1])
if not sid then return nil end
local prefix = ARGV[2]
local meta = redis.call('GET', prefix .. ':snap:' .. sid .. ':meta')
local row = redis.call('HGET', prefix .. ':snap:' .. sid .. ':lists', ARGV[1])
return {sid, meta, row}
"""


class RedisSnapshotStore:
    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "recsys", retention: int = 3) -> None:
        import redis

        if retention < 1:
            raise ValueError("retention must keep at least the current snapshot (>= 1)")
        self.url, self.prefix, self.retention = url, prefix, retention
        self.r = redis.Redis.from_url(url, decode_responses=True)
        self._get = self.r.register_script(_GET)

    def __repr__(self) -> str:
        return f"RedisSnapshotStore({self.url!r}, prefix={self.prefix!r})"

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def publish(
        self,
        lists: Lists,
        *,
        model_version: str,
        fallback: pl.DataFrame | None = None,
        meta: dict | None = None,
        batch_size: int = 5000,
    ) -> SnapshotInfo:
        """As `SQLiteSnapshotStore.publish`: lists written frame by frame into the snapshot's hash, then the switch
        in one transaction. A user in two frames is refused."""
        info = new_snapshot(model_version, meta)
        sid = info.snapshot_id
        lists_key = self._k("snap", sid, "lists")
        self.r.zadd(self._k("building"), {sid: time.time()})
        n_users = k = 0
        for chunk in encoded_chunks(lists, batch_size):
            # [items, scores]: the two stored JSON arrays joined into one (what `json.dumps([items, scores])` wrote)
            added = self.r.hset(lists_key, mapping={u: f"[{i},{s}]" for u, i, s in chunk.rows})
            if added != len(chunk.rows):  # hset counts new fields only: a user written before
                raise ValueError(f"snapshot {sid}: a user's list appears twice in the published lists")
            n_users += len(chunk.rows)
            k = max(k, chunk.k)
        if fallback is not None and fallback.height:
            items = fallback[S.ITEM_ID].cast(pl.String).to_list()
            scores = fallback[S.SCORE].cast(pl.Float64).to_list()
            self.r.hset(lists_key, FALLBACK_USER, json.dumps([items, scores]))
        info = replace(info, n_users=n_users, k=k)
        with self.r.pipeline(transaction=True) as tx:  # the switch
            tx.set(self._k("snap", sid, "meta"), json.dumps(asdict(info), default=str))
            tx.zadd(self._k("snapshots"), {sid: datetime.fromisoformat(info.created_at).timestamp()})
            tx.zrem(self._k("building"), sid)
            tx.set(self._k("current"), sid)
            tx.execute()
        self.prune(self.retention)
        return info

    def _info(self, raw: str | None) -> SnapshotInfo | None:
        return None if raw is None else SnapshotInfo(**json.loads(raw))

    def _str(self, key: str) -> str | None:
        """A string value (the client decodes responses)."""
        return cast(str | None, self.r.get(key))

    def _ids(self, key: str) -> list[str]:
        """A sorted set's members, highest score first."""
        return cast(list[str], self.r.zrevrange(key, 0, -1))

    def current(self) -> SnapshotInfo | None:
        sid = self._str(self._k("current"))
        return None if sid is None else self._info(self._str(self._k("snap", sid, "meta")))

    def snapshots(self) -> list[SnapshotInfo]:
        ids = self._ids(self._k("snapshots"))
        metas = cast(list[str | None], self.r.mget([self._k("snap", i, "meta") for i in ids])) if ids else []
        return [i for i in (self._info(m) for m in metas) if i is not None]

    def get(self, user_id: str) -> RankedList | None:
        got = self._get(keys=[self._k("current")], args=[user_id, self.prefix])
        if not got or got[2] is None:
            return None
        sid, meta, row = got
        items, scores = json.loads(row)
        return RankedList(user_id, items, scores, sid, json.loads(meta)["model_version"], user_id == FALLBACK_USER)

    def fallback(self) -> RankedList | None:
        return self.get(FALLBACK_USER)

    def list_in(self, snapshot_id: str, user_id: str) -> tuple[list[str], list[float]] | None:
        raw = cast(str | None, self.r.hget(self._k("snap", snapshot_id, "lists"), user_id))
        if raw is None:
            return None
        items, scores = decode_list(raw)
        return items, scores

    def is_ready(self, snapshot_id: str) -> bool:
        return self.r.zscore(self._k("snapshots"), snapshot_id) is not None

    def read_all(self, snapshot_id: str | None = None) -> dict[str, tuple[list[str], list[float]]]:
        for _ in range(5):  # the pointer may move (and the old snapshot be pruned) between the two reads
            sid = snapshot_id or self._str(self._k("current"))
            if sid is None:
                return {}
            raw = self.r.hgetall(self._k("snap", sid, "lists"))
            if raw or self.r.zscore(self._k("snapshots"), sid) is not None:
                return {u: tuple(json.loads(v)) for u, v in raw.items()}  # type: ignore[misc]
        raise RuntimeError(f"{self}: snapshot {sid} vanished while being read")

    def activate(self, snapshot_id: str) -> SnapshotInfo:
        if self.r.zscore(self._k("snapshots"), snapshot_id) is None:
            known = [s.snapshot_id for s in self.snapshots()]
            raise KeyError(f"no ready snapshot {snapshot_id!r} in {self}; ready ones: {known}")
        self.r.set(self._k("current"), snapshot_id)
        info = self.current()
        assert info is not None
        return info

    def prune(self, keep: int) -> list[str]:
        current = self._str(self._k("current"))
        ready = self._ids(self._k("snapshots"))
        keep_ids = set(ready[:keep]) | ({current} if current else set())
        stale = cast(list[str], self.r.zrangebyscore(self._k("building"), 0, time.time() - 3600))
        drop = [s for s in ready if s not in keep_ids] + list(stale)
        for sid in drop:
            with self.r.pipeline(transaction=True) as tx:
                tx.zrem(self._k("snapshots"), sid)
                tx.zrem(self._k("building"), sid)
                tx.delete(self._k("snap", sid, "lists"), self._k("snap", sid, "meta"))
                tx.execute()
        return drop
