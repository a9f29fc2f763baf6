"""Versioned snapshots of every user's ranked list, published atomically.

A publish writes a whole new snapshot (state `building`), then, in one transaction, marks it `ready` and moves the
`current` pointer to it. Readers resolve the pointer and read the list in one statement, so they see the old
snapshot or the new one, never a mix or a half-written one; a publish that dies midway leaves a `building` snapshot
nobody points at (pruned later). Old snapshots are kept for rollback (`activate`) up to a retention count.

The embedded default is SQLite in WAL mode (readers never block the writer, nor the writer them). A Redis backend
with the same interface lives in `recsys.serving.redis_store`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import orjson
import polars as pl

from recsys.data import schema as S

FALLBACK_USER = "\x00fallback"  # reserved key of the popularity/trending list in every snapshot


@dataclass(frozen=True)
class SnapshotInfo:
    snapshot_id: str
    created_at: str
    model_version: str
    n_users: int
    k: int
    meta: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class RankedList:
    """One user's list as published: items best first, their scores, and where it came from."""

    user_id: str
    items: list[str]
    scores: list[float]
    snapshot_id: str
    model_version: str
    fallback: bool = False


class SnapshotStore(Protocol):
    """What the nightly flow publishes to and the service reads from."""

    def publish(
        self, lists: Lists, *, model_version: str, fallback: pl.DataFrame | None = None, meta: dict | None = None
    ) -> SnapshotInfo: ...

    def current(self) -> SnapshotInfo | None: ...

    def get(self, user_id: str) -> RankedList | None: ...

    def snapshots(self) -> list[SnapshotInfo]: ...

    def activate(self, snapshot_id: str) -> SnapshotInfo: ...

    def prune(self, keep: int) -> list[str]: ...

    def fallback(self) -> RankedList | None: ...

    def read_all(self, snapshot_id: str | None = None) -> dict[str, tuple[list[str], list[float]]]: ...

    def list_in(self, snapshot_id: str, user_id: str) -> tuple[list[str], list[float]] | None:
        """One user's (items, scores) in a given snapshot (None: no list there, or no such snapshot)."""
        ...

    def is_ready(self, snapshot_id: str) -> bool:
        """Whether the snapshot is published and not pruned."""
        ...


def decode_list(text: str | bytes) -> list:
    """A stored JSON list: orjson (several times json's speed on a hundred ids or floats), or json for what only it
    reads (NaN or Infinity, which `json.dumps` writes for a non-finite score)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def new_snapshot_id(now: datetime | None = None) -> str:
    """Sortable by creation time (to the microsecond), unique: 20261128T220501.123456Z-1a2b3c4d."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S.%f}Z-{uuid.uuid4().hex[:8]}"


# What a publish takes: one frame of lists, or frames in turn (e.g. a night's partitions read one by one), each
# holding whole users, so a snapshot of millions of users is never one frame in memory.
Lists = pl.DataFrame | Iterable[pl.DataFrame]


def _grouped(lists: pl.DataFrame) -> pl.DataFrame:
    """One row per user (by user id): the items by rank, their scores, whether every score is finite."""
    missing = {S.USER_ID, S.ITEM_ID, S.RANK, S.SCORE} - set(lists.columns)
    if missing:
        raise ValueError(f"ranked lists lack columns {sorted(missing)}")
    return (
        lists.select(
            pl.col(S.USER_ID).cast(pl.String),
            S.RANK,
            pl.col(S.ITEM_ID).cast(pl.String),
            pl.col(S.SCORE).cast(pl.Float64),
        )
        .sort(S.USER_ID, S.RANK)
        .group_by(S.USER_ID, maintain_order=True)
        .agg(S.ITEM_ID, S.SCORE, pl.col(S.SCORE).is_finite().all().alias("_finite"))
    )


def _json_array(column: str) -> pl.Expr:
    """A list column as JSON array text, written by polars (no Python object per element): the one-field struct's
    `{"a":[...]}` less its first five characters and its last."""
    return pl.struct(pl.col(column).alias("a")).struct.json_encode().str.slice(5).str.head(-1)


@dataclass(frozen=True)
class EncodedChunk:
    """Users' lists as stored: (user_id, items as a JSON array, scores as a JSON array) rows, and the longest list."""

    rows: list[tuple[str, str, str]]
    k: int


def encoded_chunks(lists: Lists, batch_size: int) -> Iterator[EncodedChunk]:
    """Each frame's lists, grouped by user and written as JSON arrays in polars, in chunks of at most `batch_size`
    users: what a publish stores, without a Python list per user (at a million users of 100 items, json.dumps of
    per-user lists took most of a publish). Scores that are not finite, which polars writes as null, are written
    by `json.dumps` as before (NaN, Infinity: `decode_list` reads them back)."""
    for frame in [lists] if isinstance(lists, pl.DataFrame) else lists:
        grouped = _grouped(frame)
        encoded = grouped.select(
            S.USER_ID,
            _json_array(S.ITEM_ID).alias("_items"),
            pl.when("_finite").then(_json_array(S.SCORE)).alias("_scores"),
            pl.col(S.ITEM_ID).list.len().alias("_k"),
        )
        for start in range(0, encoded.height, batch_size):
            part = encoded.slice(start, batch_size)
            rows = part.select(S.USER_ID, "_items", "_scores").rows()
            if part["_scores"].null_count():
                scores = grouped.slice(start, batch_size)[S.SCORE]
                rows = [(u, i, json.dumps(scores[n].to_list()) if s is None else s) for n, (u, i, s) in enumerate(rows)]
            longest = part["_k"].max()
            yield EncodedChunk(rows, longest if isinstance(longest, int) else 0)


def new_snapshot(model_version: str, meta: dict | None) -> SnapshotInfo:
    """A new snapshot's identity (its user count and k are filled in once its lists are written)."""
    now = datetime.now(UTC)
    return SnapshotInfo(new_snapshot_id(now), now.isoformat(), model_version, 0, 0, dict(meta or {}))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    model_version TEXT NOT NULL,
    n_users INTEGER NOT NULL,
    k INTEGER NOT NULL,
    meta TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('building', 'ready'))
);
CREATE TABLE IF NOT EXISTS lists (
    snapshot_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    items TEXT NOT NULL,
    scores TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pointer (
    name TEXT PRIMARY KEY,
    snapshot_id TEXT NOT NULL REFERENCES snapshots(id)
);
"""


class SQLiteSnapshotStore:
    """Snapshots in one SQLite file (WAL mode). Safe across threads and processes; one connection per thread."""

    def __init__(self, path: Path | str, *, retention: int = 3) -> None:
        if retention < 1:
            raise ValueError("retention must keep at least the current snapshot (>= 1)")
        self.path = Path(path)
        self.retention = retention
        if self.path.parent.exists() and not self.path.parent.is_dir():
            raise ValueError(f"snapshot store {self.path}: {self.path.parent} is a file, not a folder")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        try:
            self._con().executescript(_SCHEMA)  # idempotent DDL; executescript commits on its own
        except sqlite3.DatabaseError as exc:  # not a database, damaged, or a folder in its place
            self._local.con = None
            raise ValueError(
                f"snapshot store {self.path}: not a readable SQLite database ({exc}); restore it from a backup, "
                "or move it aside to start with an empty store (the next night publishes again)"
            ) from exc

    def __repr__(self) -> str:
        return f"SQLiteSnapshotStore({str(self.path)!r})"

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA busy_timeout=30000")
            self._local.con = con
        return con

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    # -- writing -------------------------------------------------------------------------------------------------
    def publish(
        self,
        lists: Lists,
        *,
        model_version: str,
        fallback: pl.DataFrame | None = None,
        meta: dict | None = None,
        batch_size: int = 5000,
    ) -> SnapshotInfo:
        """Write `lists` (user_id, item_id, rank, score; one frame or frames in turn, each with whole users) and
        `fallback` (item_id, score, best first) as a new snapshot, then switch the current pointer to it in one
        transaction. A user in two frames is refused (the build is abandoned). Returns the new snapshot."""
        info = new_snapshot(model_version, meta)
        sid = info.snapshot_id
        with self._write() as con:
            con.execute(
                "INSERT INTO snapshots VALUES (?, ?, ?, 0, 0, ?, 'building')",
                (sid, info.created_at, model_version, json.dumps(info.meta, default=str)),
            )
        n_users = k = 0
        for chunk in encoded_chunks(lists, batch_size):
            with self._write() as con:
                try:
                    con.executemany("INSERT INTO lists VALUES (?, ?, ?, ?)", [(sid, *row) for row in chunk.rows])
                except sqlite3.IntegrityError as exc:
                    raise ValueError(f"snapshot {sid}: a user's list appears twice in the published lists") from exc
            n_users += len(chunk.rows)
            k = max(k, chunk.k)
        with self._write() as con:
            if fallback is not None and fallback.height:
                con.execute(
                    "INSERT INTO lists VALUES (?, ?, ?, ?)",
                    (
                        sid,
                        FALLBACK_USER,
                        json.dumps(fallback[S.ITEM_ID].cast(pl.String).to_list()),
                        json.dumps(fallback[S.SCORE].cast(pl.Float64).to_list()),
                    ),
                )
        with self._write() as con:  # the switch: one small transaction
            con.execute("UPDATE snapshots SET state = 'ready', n_users = ?, k = ? WHERE id = ?", (n_users, k, sid))
            con.execute(
                "INSERT INTO pointer VALUES ('current', ?) "
                "ON CONFLICT(name) DO UPDATE SET snapshot_id = excluded.snapshot_id",
                (sid,),
            )
        self.prune(self.retention)
        return replace(info, n_users=n_users, k=k)

    def activate(self, snapshot_id: str) -> SnapshotInfo:
        """Point `current` at an earlier (ready) snapshot: rollback."""
        with self._write() as con:
            row = con.execute("SELECT state FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
            if row is None or row[0] != "ready":
                known = [s.snapshot_id for s in self.snapshots()]
                raise KeyError(f"no ready snapshot {snapshot_id!r} in {self.path}; ready ones: {known}")
            con.execute("UPDATE pointer SET snapshot_id = ? WHERE name = 'current'", (snapshot_id,))
        info = self.current()
        assert info is not None
        return info

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest `keep` ready snapshots (never the current one) and any abandoned build."""
        cur = self.current()
        ready = [s.snapshot_id for s in self.snapshots()]  # newest first
        keep_ids = set(ready[:keep]) | ({cur.snapshot_id} if cur else set())
        with self._write() as con:
            # a build younger than an hour may be a concurrent publish in progress: leave it
            horizon = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
            stale = [
                r[0]
                for r in con.execute("SELECT id FROM snapshots WHERE state = 'building' AND created_at < ?", (horizon,))
            ]
            drop = [s for s in ready if s not in keep_ids] + stale
            for sid in drop:
                con.execute("DELETE FROM lists WHERE snapshot_id = ?", (sid,))
                con.execute("DELETE FROM snapshots WHERE id = ?", (sid,))
        return drop

    # -- reading -------------------------------------------------------------------------------------------------
    def current(self) -> SnapshotInfo | None:
        row = (
            self._con()
            .execute(
                "SELECT s.id, s.created_at, s.model_version, s.n_users, s.k, s.meta FROM pointer p "
                "JOIN snapshots s ON s.id = p.snapshot_id WHERE p.name = 'current'"
            )
            .fetchone()
        )
        return None if row is None else SnapshotInfo(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]))

    def snapshots(self) -> list[SnapshotInfo]:
        """Ready snapshots, newest first."""
        rows = self._con().execute(
            "SELECT id, created_at, model_version, n_users, k, meta FROM snapshots WHERE state = 'ready' "
            "ORDER BY created_at DESC, id DESC"
        )
        return [SnapshotInfo(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def get(self, user_id: str) -> RankedList | None:
        """The user's list in the current snapshot, or None when they have none there (see `fallback`)."""
        row = (
            self._con()
            .execute(
                "SELECT s.id, s.model_version, l.items, l.scores FROM pointer p "
                "JOIN snapshots s ON s.id = p.snapshot_id "
                "JOIN lists l ON l.snapshot_id = p.snapshot_id AND l.user_id = ? WHERE p.name = 'current'",
                (user_id,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return RankedList(user_id, json.loads(row[2]), json.loads(row[3]), row[0], row[1], user_id == FALLBACK_USER)

    def fallback(self) -> RankedList | None:
        """The popularity/trending list published with the current snapshot."""
        return self.get(FALLBACK_USER)

    def list_in(self, snapshot_id: str, user_id: str) -> tuple[list[str], list[float]] | None:
        row = (
            self._con()
            .execute("SELECT items, scores FROM lists WHERE snapshot_id = ? AND user_id = ?", (snapshot_id, user_id))
            .fetchone()
        )
        return None if row is None else (decode_list(row[0]), decode_list(row[1]))

    def is_ready(self, snapshot_id: str) -> bool:
        row = self._con().execute("SELECT state FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        return row is not None and row[0] == "ready"

    def read_all(self, snapshot_id: str | None = None) -> dict[str, tuple[list[str], list[float]]]:
        """Every list of a snapshot (default: current) in one read transaction: for in-memory serving."""
        con = self._con()
        con.execute("BEGIN")
        try:
            if snapshot_id is None:
                got = con.execute("SELECT snapshot_id FROM pointer WHERE name = 'current'").fetchone()
                if got is None:
                    return {}
                snapshot_id = got[0]
            rows = con.execute("SELECT user_id, items, scores FROM lists WHERE snapshot_id = ?", (snapshot_id,))
            return {u: (json.loads(i), json.loads(s)) for u, i, s in rows}
        finally:
            con.execute("COMMIT")
