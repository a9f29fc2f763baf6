"""What the HTTP service does, without HTTP: hold the current snapshot (lists + the champion's model), answer list
and re-rank requests from it, and swap to a newly published snapshot atomically.

A request reads `self.loaded` once and uses only that object, so a reload (which builds a complete new
`LoadedSnapshot` first and then replaces the reference) can never give it a mix of two snapshots. A snapshot's lists
are held in memory up to `lists_in_memory_max_entries` (users x k); a larger one is read from the store per request,
always from the snapshot loaded (`StoredLists`), so start-up and memory do not grow with the number of users.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import polars as pl
from pydantic import BaseModel, Field, SecretStr

from recsys.data import schema as S
from recsys.encoder.cache import ItemEmbeddings
from recsys.ranker.scoring import RankingModel
from recsys.serving.store import FALLBACK_USER, SnapshotInfo, SnapshotStore, SQLiteSnapshotStore

log = logging.getLogger("recsys.serving")


class ServingConfig(BaseModel, frozen=True, extra="forbid"):
    """The service: where the published lists are, request limits, reload, admin token."""

    backend: Literal["sqlite", "redis"] = "sqlite"
    store_path: Path | None = Field(None, description="SQLite snapshot store; None: [nightly] store_path")
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "recsys"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_k: int = Field(100, ge=1, le=1000, description="largest k a client may ask for")
    default_k: int = Field(10, ge=1)
    max_candidates: int = Field(1000, ge=1, description="largest candidate list of POST /v1/rank")
    max_exclude: int = Field(500, ge=0)
    max_recent_items: int = Field(100, ge=1)
    max_body_bytes: int = Field(
        1 << 20,
        ge=1024,
        description="largest request body (POST /v1/rank); larger ones get 413 before any parsing. 1 MiB holds "
        "max_candidates ids of several hundred characters each",
    )
    max_header_bytes: int = Field(
        16_384, ge=1024, description="largest request headers in all (names + values); larger ones get 431"
    )
    reload_interval_s: float = Field(5.0, gt=0, description="how often the store's pointer is checked")
    load_model: bool = Field(True, description="load the champion's ranker for POST /v1/rank")
    blas_threads: int | None = Field(
        1,
        ge=1,
        description="BLAS threads while serving (None: the library default). Requests run small matrix products, "
        "where extra BLAS threads only contend with the server's own threads: 1 thread made re-ranking ~2.5x faster",
    )
    admin_token: SecretStr | None = Field(None, description="bearer token of /admin/*; None disables them")
    lists_in_memory_max_entries: int = Field(
        5_000_000,
        ge=0,
        description="a snapshot with at most this many list entries (users x k) is held in memory (~120 bytes an "
        "entry, read at load); a larger one is read from the store per request (0: always), so start-up and memory "
        "stay flat whatever the number of users",
    )


class NotReady(RuntimeError):
    """No snapshot (or no model for re-ranking) is loaded yet."""


class SnapshotGone(RuntimeError):
    """The snapshot a request read from was pruned from the store (a newer one is current)."""


class ListSource(Protocol):
    """A snapshot's lists by user: a dict held in memory, or `StoredLists`."""

    def get(self, user_id: str, /) -> tuple[list[str], list[float]] | None: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class StoredLists:
    """A snapshot's lists read from the store per request, always from this snapshot (never a newer one half-way)."""

    store: SnapshotStore
    snapshot_id: str
    n_users: int

    def get(self, user_id: str, /) -> tuple[list[str], list[float]] | None:
        """The user's list; None when they have none; `SnapshotGone` when the snapshot itself was pruned."""
        got = self.store.list_in(self.snapshot_id, user_id)
        if got is None and not self.store.is_ready(self.snapshot_id):
            raise SnapshotGone(self.snapshot_id)
        return got

    def __len__(self) -> int:
        return self.n_users


@dataclass(frozen=True)
class LoadedSnapshot:
    info: SnapshotInfo
    lists: ListSource
    fallback: tuple[list[str], list[float]]
    model: RankingModel | None  # the champion's ranking model (None: re-ranking unavailable)
    model_key: str | None
    loaded_at: float = field(default_factory=time.time)


def _load_model(meta: dict) -> RankingModel | None:
    """The champion's ranking model as published: the ranker, item embeddings and the state (sources and features)
    the night built on the events the lists came from, read from disk, never fitted here. The path comes from the
    store's metadata, written by the nightly flow; nothing a request sends is ever used as a path."""
    path = meta.get("model")
    if not path:
        if meta.get("bundle"):
            raise ValueError(
                "this snapshot was published before ranking models were saved with it (bundle format 1): publish "
                "again with `recsys run nightly --force` to enable re-ranking"
            )
        return None
    model = RankingModel.load(Path(path))
    model.prepare()  # the per-state tables a request would otherwise build: loaded before the snapshot is served
    return model


MAX_BACKOFF_S = 300.0  # longest wait between retries of a snapshot that failed to load


class RankingService:
    """The current snapshot, reloaded when the store's pointer moves."""

    def __init__(self, store: SnapshotStore, cfg: ServingConfig | None = None) -> None:
        self.store = store
        self.cfg = cfg or ServingConfig()
        self.loaded: LoadedSnapshot | None = None
        self._reload_lock = threading.Lock()
        self.reloads = 0
        self.last_error: str | None = None
        # snapshot id -> (failed loads, monotonic time before which it is not tried again): exponential backoff
        self.failures: dict[str, tuple[int, float]] = {}

    # -- loading -------------------------------------------------------------------------------------------------
    def _model_missing(self, loaded: LoadedSnapshot) -> bool:
        return self.cfg.load_model and loaded.model is None and bool(loaded.info.meta.get("model"))

    def _backing_off(self, snapshot_id: str) -> bool:
        failed = self.failures.get(snapshot_id)
        return failed is not None and time.monotonic() < failed[1]

    def _failed(self, snapshot_id: str, error: str) -> None:
        n = self.failures.get(snapshot_id, (0, 0.0))[0] + 1
        delay = min(MAX_BACKOFF_S, self.cfg.reload_interval_s * 2**n)
        self.failures[snapshot_id] = (n, time.monotonic() + delay)
        self.last_error = f"{error} (attempt {n}; next try in {delay:.0f} s)"

    def reload(self, *, force: bool = False, retry_now: bool = False) -> bool:
        """Load the store's current snapshot if it is not the one in memory (or if its model failed to load
        before). True when something changed.

        A snapshot whose model fails to load never replaces a working one: the last good lists and model keep
        serving, the failure is in `last_error`, and the load is retried with exponential backoff (`retry_now`,
        as `/admin/reload` sends, retries at once; `force` reloads even the snapshot in memory). With nothing
        loaded yet, the lists are served without the model (re-ranking answers 503 until the model loads). A
        successful load clears `last_error`."""
        with self._reload_lock:
            info = self.store.current()
            old = self.loaded
            if info is None:
                return False
            same = old is not None and old.info.snapshot_id == info.snapshot_id
            if same and not force and not (old is not None and self._model_missing(old)):
                return False
            if not (force or retry_now) and self._backing_off(info.snapshot_id):
                return False
            lists: ListSource
            if info.n_users * max(info.k, 1) <= self.cfg.lists_in_memory_max_entries:
                held = self.store.read_all(info.snapshot_id)
                if not held and info.n_users:  # pruned between the two reads (a newer one is current): next poll
                    return False
                fallback = held.pop(FALLBACK_USER, ([], []))
                lists = held
            else:
                got = self.store.list_in(info.snapshot_id, FALLBACK_USER)
                if got is None and not self.store.is_ready(info.snapshot_id):
                    return False  # pruned meanwhile: next poll
                fallback = got or ([], [])
                lists = StoredLists(self.store, info.snapshot_id, info.n_users)
            model, key = (old.model, old.model_key) if old is not None else (None, None)
            wanted = str(info.meta.get("model"))
            if self.cfg.load_model and (model is None or key != wanted or force):
                try:
                    model = _load_model(info.meta)
                    key = wanted if model is not None else None
                except Exception as exc:
                    log.exception("could not load the model of snapshot %s", info.snapshot_id)
                    self._failed(info.snapshot_id, f"model of {info.snapshot_id}: {exc}")
                    if old is not None and not same and not self._model_missing(old):
                        return False  # the last good snapshot and model keep serving
                    model, key = None, None  # nothing better to serve: these lists, without re-ranking
            self.loaded = LoadedSnapshot(info, lists, fallback, model, key)
            self.reloads += 1
            if not self._model_missing(self.loaded):
                self.failures.pop(info.snapshot_id, None)
                self.last_error = None
            where = "from the store" if isinstance(lists, StoredLists) else "in memory"
            log.info(
                "serving snapshot %s (%s, %d users, lists %s)", info.snapshot_id, info.model_version, len(lists), where
            )
            return True

    def ready(self) -> tuple[bool, str]:
        """Ready when lists can be answered (a snapshot is loaded); the model's health is `model_status`."""
        cur = self.loaded
        if cur is None:
            return False, "no snapshot loaded"
        return True, "ok"

    def model_status(self) -> str:
        """'ok', 'off' (load_model false, or a snapshot without a model) or why re-ranking is unavailable."""
        cur = self.loaded
        if cur is None:
            return "no snapshot loaded"
        if not self.cfg.load_model or (cur.model is None and not cur.info.meta.get("model")):
            return "off"
        if cur.model is None:
            return f"not loaded: {self.last_error or 'unknown error'}"
        return "ok"

    @property
    def lists_in_memory(self) -> bool:
        """Whether a list request is answered from memory (no I/O), as opposed to a read from the store."""
        cur = self.loaded
        return cur is None or not isinstance(cur.lists, StoredLists)

    @property
    def list_reads_wait(self) -> bool:
        """Whether a list request may wait on a server (lists read per request from Redis): the app runs those in its
        thread pool. A SQLite store's read is an indexed lookup in a local file (~0.1 ms; WAL readers do not wait
        for writers), cheaper than the thread-pool hop: it runs on the event loop, as a dict read does."""
        cur = self.loaded
        return (
            cur is not None and isinstance(cur.lists, StoredLists) and not isinstance(self.store, SQLiteSnapshotStore)
        )

    # -- requests ------------------------------------------------------------------------------------------------
    def recommendations(self, user_id: str, k: int, exclude: frozenset[str] = frozenset()) -> dict:
        cur = self.loaded
        if cur is None:
            raise NotReady("no snapshot loaded yet")
        snapshot_id, model_version, fallback_list = cur.info.snapshot_id, cur.info.model_version, cur.fallback
        try:
            got = cur.lists.get(user_id)
        except SnapshotGone:
            # the loaded snapshot was pruned before the next poll (publishes faster than the poll, retention 1):
            # answer from the store's current snapshot, named as such; the reloader swaps the model in the
            # background (loading it here would hold up every request behind this one)
            ranked = self.store.get(user_id) or self.store.fallback()
            if ranked is None:
                raise NotReady("the loaded snapshot was pruned and the store has no current one") from None
            got = None if ranked.fallback else (ranked.items, ranked.scores)
            snapshot_id, model_version = ranked.snapshot_id, ranked.model_version
            fallback_list = (ranked.items, ranked.scores)
        fallback = got is None
        items, scores = fallback_list if got is None else got
        out: list[dict[str, object]] = []
        for item, score in zip(items, scores, strict=True):
            if item in exclude:
                continue
            out.append({"item_id": item, "score": score, "rank": len(out) + 1})
            if len(out) == k:
                break
        return {
            "user_id": user_id,
            "items": out,
            "fallback": fallback,
            "fallback_reason": "unknown or cold user: trending items" if fallback else None,
            "model_version": model_version,
            "snapshot_id": snapshot_id,
        }

    def rank(
        self,
        candidates: list[str],
        *,
        user_id: str | None,
        recent_items: list[str] | None,
        include_seen: bool = False,
    ) -> dict:
        """Re-rank `candidates` for a known user with the champion's ranker; for an unknown user with recent items,
        by interest match of the candidates' texts to those items; otherwise by trending order.

        Items the user already interacted with (a known user's training events, a session's `recent_items`) are left
        out, as in the published lists, and reported in `excluded_seen`, unless `include_seen`. `unknown_items` are
        the candidates absent from the version's catalog."""
        cur = self.loaded
        if cur is None:
            raise NotReady("no snapshot loaded yet")
        model = cur.model
        if model is None:
            raise NotReady("no model loaded for re-ranking")
        known = user_id is not None and model.knows(user_id)
        excluded: list[str] = []
        if not include_seen:
            seen = model.state.seen_items(user_id) if known and user_id else set(recent_items or ())
            excluded = [c for c in candidates if c in seen]
            candidates = [c for c in candidates if c not in seen]
        catalog = model.state.item_index
        if not candidates:
            scores: list[float | None] = []
            method = "ranker" if known else "interest-match" if recent_items else "trending"
        elif known:
            frame = pl.DataFrame({S.USER_ID: [user_id] * len(candidates), S.ITEM_ID: candidates})
            scored = model.rank_candidates(frame)
            scores = scored[S.SCORE].to_list()
            method = "ranker"
        elif recent_items and model.embeddings is not None:
            scores = self._interest_scores(model.embeddings, recent_items, candidates)
            method = "interest-match"
        else:
            pop = dict(zip(*cur.fallback, strict=True))
            scores = [pop.get(c) for c in candidates]
            method = "trending"
        order = sorted(range(len(candidates)), key=lambda i: (scores[i] is None, -(scores[i] or 0.0), i))
        ranked = [
            {"item_id": candidates[i], "score": scores[i], "rank": r + 1 if scores[i] is not None else None}
            for r, i in enumerate(order)
        ]
        return {
            "user_id": user_id,
            "method": method,
            "items": ranked,
            "unknown_items": [candidates[i] for i in order if candidates[i] not in catalog],
            "excluded_seen": excluded,
            "model_version": cur.info.model_version,
            "snapshot_id": cur.info.snapshot_id,
        }

    @staticmethod
    def _interest_scores(emb: ItemEmbeddings, recent: list[str], candidates: list[str]) -> list[float | None]:
        row = emb.row_of
        hist = [row[i] for i in recent if i in row]
        if not hist:
            return [None] * len(candidates)
        profile = emb.vectors[hist].astype(np.float64).mean(axis=0)
        profile /= np.linalg.norm(profile) or 1.0
        out: list[float | None] = []
        for c in candidates:
            r = row.get(c)
            out.append(None if r is None else float(emb.vectors[r] @ profile))
        return out


class Reloader(threading.Thread):
    """Polls the store's pointer and swaps snapshots in the background (hot reload)."""

    def __init__(self, service: RankingService, interval_s: float) -> None:
        super().__init__(name="recsys-reloader", daemon=True)
        self.service, self.interval_s = service, interval_s
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            try:
                self.service.reload()
            except Exception as exc:  # the service keeps serving what it has
                log.exception("reload failed")
                self.service.last_error = str(exc)

    def stop(self) -> None:
        self.stop_event.set()
