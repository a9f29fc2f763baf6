"""The HTTP service product backends call (FastAPI): ranked lists, on-demand re-ranking, health, metrics, reload.

    GET  /v1/users/{user_id}/recommendations?k=10&exclude=a,b   the user's published list (or the flagged fallback)
    POST /v1/rank                                                re-rank a candidate list with the champion
    GET  /healthz   /readyz   /metrics                           liveness, readiness, Prometheus
    POST /admin/reload                                           load the newest snapshot now (bearer token)

Every response carries the model version and snapshot id (body and `X-Model-Version` / `X-Snapshot-Id` headers).
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, Field, model_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys.serving.service import NotReady, RankingService, Reloader, ServingConfig

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,127}$"
_ID = re.compile(ID_PATTERN)


class RankRequest(BaseModel):
    """Candidates to re-rank, for a known user (`user_id`) or an anonymous session (`recent_items`)."""

    user_id: str | None = Field(None, pattern=ID_PATTERN, examples=["u0001"])
    recent_items: list[str] | None = Field(None, description="item ids the session engaged with, most recent last")
    candidates: list[str] = Field(..., min_length=1, description="item ids to order")
    include_seen: bool = Field(
        False, description="keep items the user (or the session's recent_items) already engaged with; default: left out"
    )

    @model_validator(mode="after")
    def _check(self) -> RankRequest:
        if self.user_id is None and not self.recent_items:
            raise ValueError("give user_id or recent_items")
        for name, ids in (("candidates", self.candidates), ("recent_items", self.recent_items or [])):
            bad = next((i for i in ids if not _ID.match(i)), None)
            if bad is not None:
                raise ValueError(f"{name}: {bad[:40]!r} is not a valid item id ({ID_PATTERN})")
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError("candidates contain duplicates")
        return self


class _Json(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _respond(body: dict, status: int = 200) -> Response:
    headers = {}
    if body.get("model_version"):
        headers = {"X-Model-Version": body["model_version"], "X-Snapshot-Id": body["snapshot_id"]}
    return _Json(body, status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: a request body larger than `limit` bytes gets 413 with the service's JSON error body, decided
    from Content-Length before reading, or while reading a chunked body (at most `limit` bytes are ever buffered).
    Request headers larger than `header_limit` bytes in all get 431 (Request Header Fields Too Large, RFC 6585: the
    status for headers) before the app sees them; the HTTP server has parsed them by then, so a front proxy's own
    header limit is still the first line."""

    def __init__(
        self, app: ASGIApp, *, limit: int, version: Callable[[], str | None], header_limit: int = 16_384
    ) -> None:
        self.app, self.limit, self.version, self.header_limit = app, limit, version, header_limit

    async def _refuse(self, send: Send, status: int, error: str) -> None:
        body = orjson.dumps({"error": error, "model_version": self.version()})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _too_large(self, send: Send) -> None:
        await self._refuse(send, 413, f"request body larger than {self.limit} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and sum(len(k) + len(v) for k, v in scope["headers"]) > self.header_limit:
            await self._refuse(send, 431, f"request headers larger than {self.header_limit} bytes")
            return
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._too_large(send)
            return
        chunks, size, more = [], 0, True
        while more:  # buffer the body (bounded by the limit), then hand it to the app in one message
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._too_large(send)
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def create_app(service: RankingService, *, start_reloader: bool = True) -> FastAPI:
    """The app around a service (load its first snapshot at startup; reload in the background)."""
    cfg: ServingConfig = service.cfg
    registry = CollectorRegistry()
    requests = Counter("recsys_requests_total", "Requests", ["endpoint", "status"], registry=registry)
    latency = Histogram(
        "recsys_request_seconds",
        "Request latency",
        ["endpoint"],
        buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        registry=registry,
    )
    fallbacks = Counter("recsys_fallback_total", "Lists served from the fallback", registry=registry)
    reloads = Gauge("recsys_reloads", "Snapshots loaded since start", registry=registry)
    snapshot_age = Gauge("recsys_snapshot_loaded_timestamp", "When the current snapshot was loaded", registry=registry)
    model_ok = Gauge(
        "recsys_model_loaded", "1 when the re-ranking model is loaded (or not needed), else 0", registry=registry
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(cfg.blas_threads, user_api="blas") if cfg.blas_threads else None
        service.reload()
        reloader = Reloader(service, cfg.reload_interval_s) if start_reloader else None
        if reloader:
            reloader.start()
        yield
        if reloader:
            reloader.stop()
        if limits is not None:
            limits.restore_original_limits()

    # Swagger UI (/docs) and ReDoc (/redoc) from assets installed with the package, not a CDN: they work offline.
    app = FastAPIOffline(
        title="recsys",
        version="1",
        summary="Ranked lists and on-demand re-ranking from the champion model.",
        lifespan=lifespan,
    )

    def observe(endpoint: str, status: int, started: float) -> None:
        requests.labels(endpoint, str(status)).inc()
        latency.labels(endpoint).observe(time.perf_counter() - started)

    # The list lookup is an in-memory dict read: it runs on the event loop (no thread-pool hop). Re-ranking is CPU
    # work of a few milliseconds and stays a plain `def` (FastAPI runs it in its thread pool).
    @app.get("/v1/users/{user_id}/recommendations", summary="A user's ranked list")
    async def recommendations(
        user_id: str = Path(..., pattern=ID_PATTERN, description="user id"),
        k: int = Query(cfg.default_k, ge=1, le=cfg.max_k, description="list length"),
        exclude: str | None = Query(None, description="comma-separated item ids to leave out", max_length=20_000),
    ) -> Response:
        started = time.perf_counter()
        excluded: frozenset[str] = frozenset()
        if exclude:
            parts = [p for p in exclude.split(",") if p]
            if len(parts) > cfg.max_exclude:
                observe("recommendations", 422, started)
                raise HTTPException(422, f"exclude: at most {cfg.max_exclude} item ids")
            bad = next((p for p in parts if not _ID.match(p)), None)
            if bad is not None:
                observe("recommendations", 422, started)
                raise HTTPException(422, f"exclude: {bad[:40]!r} is not a valid item id")
            excluded = frozenset(parts)
        try:
            body = service.recommendations(user_id, k, excluded)
        except NotReady as exc:
            observe("recommendations", 503, started)
            raise HTTPException(503, str(exc)) from exc
        if body["fallback"]:
            fallbacks.inc()
        observe("recommendations", 200, started)
        return _respond(body)

    @app.post("/v1/rank", summary="Re-rank a candidate list with the champion")
    def rank(req: RankRequest) -> Response:
        started = time.perf_counter()
        if len(req.candidates) > cfg.max_candidates:
            observe("rank", 422, started)
            raise HTTPException(422, f"candidates: at most {cfg.max_candidates} item ids")
        if req.recent_items and len(req.recent_items) > cfg.max_recent_items:
            observe("rank", 422, started)
            raise HTTPException(422, f"recent_items: at most {cfg.max_recent_items} item ids")
        try:
            body = service.rank(
                req.candidates, user_id=req.user_id, recent_items=req.recent_items, include_seen=req.include_seen
            )
        except NotReady as exc:
            observe("rank", 503, started)
            raise HTTPException(503, str(exc)) from exc
        observe("rank", 200, started)
        return _respond(body)

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="Ready when lists can be served (a snapshot is loaded); model health beside it")
    async def readyz() -> Response:
        ok, reason = service.ready()
        cur = service.loaded
        body = {
            "ready": ok,
            "reason": reason,
            "model": service.model_status(),
            "model_version": cur.info.model_version if cur else None,
            "snapshot_id": cur.info.snapshot_id if cur else None,
            "last_error": service.last_error,
        }
        return _respond(body, 200 if ok else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        reloads.set(service.reloads)
        model_ok.set(1.0 if service.model_status() in ("ok", "off") else 0.0)
        if service.loaded:
            snapshot_age.set(service.loaded.loaded_at)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload", summary="Load the newest published snapshot now (bearer token)")
    def admin_reload(authorization: str | None = Header(None)) -> Response:
        token = cfg.admin_token.get_secret_value() if cfg.admin_token else None
        if token is None:
            raise HTTPException(404, "admin endpoints are disabled (no admin token configured)")
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "bad or missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        changed = service.reload(retry_now=True)  # a snapshot that failed to load is retried now, not after backoff
        cur = service.loaded
        return _respond(
            {
                "reloaded": changed,
                "model_version": cur.info.model_version if cur else None,
                "snapshot_id": cur.info.snapshot_id if cur else None,
            }
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        cur = service.loaded
        body = {"error": exc.detail, "model_version": cur.info.model_version if cur else None}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 naming each bad field (location, message), with the model version like every other response."""
        endpoint = "rank" if request.url.path == "/v1/rank" else "recommendations"
        requests.labels(endpoint, "422").inc()
        cur = service.loaded
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        body = {"error": "invalid request", "errors": errors, "model_version": cur.info.model_version if cur else None}
        return JSONResponse(body, status_code=422)

    app.add_middleware(
        BodyLimit,
        limit=cfg.max_body_bytes,
        header_limit=cfg.max_header_bytes,
        version=lambda: service.loaded.info.model_version if service.loaded else None,
    )
    return app
