"""The HTTP service product backends call (FastAPI): ranked lists, on-demand re-ranking, health, metrics, reload.

    GET  /v1/users/{user_id}/recommendations?k=10&exclude=a,b   the user's published list (or the flagged fallback)
    POST /v1/rank                                                re-rank a candidate list with the champion
    GET  /healthz   /readyz   /metrics                           liveness, readiness, Prometheus
    POST /admin/reload                                           load the newest snapshot now (bearer token)

Every response carries the model version and snapshot id (body and `X-Model-Version` / `X-Snapshot-Id` headers).
"""

# No `from __future__ import annotations` here: the rank route's body model is a class made per app (the configured
# list limits), and FastAPI resolves string annotations in the module's globals only, where that class is not.
import hmac
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys.serving import schemas as api
from recsys.serving.schemas import ID_LIST_PATTERN, ID_MAX_LENGTH, ID_PATTERN, ItemId, errors, ok
from recsys.serving.service import NotReady, RankingService, Reloader, ServingConfig

# `Authorization: Bearer <token>` (the scheme case-insensitive, RFC 7235); anything else reads as no token
_bearer = HTTPBearer(auto_error=False, description="the service's [serving] admin_token")
_HEALTHY = orjson.dumps({"status": "ok"})


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

    class RankRequest(api.RankRequest):  # this service's list limits, enforced and in the schema
        recent_items: list[ItemId] | None = Field(
            None, max_length=cfg.max_recent_items, description="item ids the session engaged with, most recent last"
        )
        candidates: list[ItemId] = Field(
            ...,
            min_length=1,
            max_length=cfg.max_candidates,
            description="item ids to order, each once",
            json_schema_extra={"uniqueItems": True},
        )

    # A list held in memory (a dict read) or read from a SQLite store (an indexed read of a local file) runs on the
    # event loop: a thread-pool hop costs more than either (GET p99 8.7 vs 2.7 ms for SQLite reads, 4 connections,
    # on the 10k-user scale snapshot). Lists read per request from Redis wait on the network: thread pool. Re-ranking
    # is CPU work of a few milliseconds and stays a plain `def` (FastAPI runs it in its thread pool). Bodies are built
    # as dicts and rendered by orjson: `response_model` only documents them (a returned Response is sent as it is).
    @app.get(
        "/v1/users/{user_id}/recommendations",
        summary="A user's ranked list",
        response_model=api.Recommendations,
        responses=ok("The user's list, or the trending fallback") | errors(422, 431, 503),
    )
    async def recommendations(
        user_id: str = Path(..., pattern=ID_PATTERN, max_length=ID_MAX_LENGTH, description="user id"),
        k: int = Query(cfg.default_k, ge=1, le=cfg.max_k, description="list length"),
        exclude: str | None = Query(
            None,
            description=f"comma-separated item ids to leave out (at most {cfg.max_exclude})",
            pattern=ID_LIST_PATTERN,
            max_length=20_000,
        ),
    ) -> Response:
        started = time.perf_counter()
        excluded: frozenset[str] = frozenset()
        if exclude:
            parts = [p for p in exclude.split(",") if p]  # each a valid id: the pattern checked them
            if len(parts) > cfg.max_exclude:
                observe("recommendations", 422, started)
                raise HTTPException(422, f"exclude: at most {cfg.max_exclude} item ids")
            excluded = frozenset(parts)
        try:
            if not service.list_reads_wait:
                body = service.recommendations(user_id, k, excluded)
            else:
                body = await run_in_threadpool(service.recommendations, user_id, k, excluded)
        except NotReady as exc:
            observe("recommendations", 503, started)
            raise HTTPException(503, str(exc)) from exc
        if body["fallback"]:
            fallbacks.inc()
        observe("recommendations", 200, started)
        return _respond(body)

    @app.post(
        "/v1/rank",
        summary="Re-rank a candidate list with the champion",
        response_model=api.Ranking,
        responses=ok("The candidates in the champion's order") | errors(400, 413, 422, 431, 503),
    )
    def rank(req: RankRequest) -> Response:
        started = time.perf_counter()
        try:
            body = service.rank(
                req.candidates, user_id=req.user_id, recent_items=req.recent_items, include_seen=req.include_seen
            )
        except NotReady as exc:
            observe("rank", 503, started)
            raise HTTPException(503, str(exc)) from exc
        observe("rank", 200, started)
        return _respond(body)

    @app.get("/healthz", summary="Liveness", response_model=api.Health, responses=errors(431))
    async def healthz() -> Response:
        return Response(_HEALTHY, media_type="application/json")

    @app.get(
        "/readyz",
        summary="Ready when lists can be served (a snapshot is loaded); model health beside it",
        response_model=api.Readiness,
        responses=ok("Ready")
        | {503: {"model": api.Readiness, "description": "Not ready: no snapshot loaded yet"}}
        | errors(431),
    )
    async def readyz() -> Response:
        ready, reason = service.ready()
        cur = service.loaded
        body = {
            "ready": ready,
            "reason": reason,
            "model": service.model_status(),
            "model_version": cur.info.model_version if cur else None,
            "snapshot_id": cur.info.snapshot_id if cur else None,
            "last_error": service.last_error,
        }
        return _respond(body, 200 if ready else 503)

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses=errors(431, json_only=True) | {200: {"description": "Prometheus text exposition format"}},
    )
    async def metrics() -> Response:
        reloads.set(service.reloads)
        model_ok.set(1.0 if service.model_status() in ("ok", "off") else 0.0)
        if service.loaded:
            snapshot_age.set(service.loaded.loaded_at)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/admin/reload",
        summary="Load the newest published snapshot now (bearer token)",
        response_model=api.Reloaded,
        responses=ok("The snapshot now served") | errors(401, 404, 413, 431),
    )
    def admin_reload(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Response:
        token = cfg.admin_token.get_secret_value() if cfg.admin_token else None
        if token is None:
            raise HTTPException(404, "admin endpoints are disabled (no admin token configured)")
        given = credentials.credentials if credentials is not None else ""  # None: no token, or not a Bearer one
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

    # Starlette's class: also the router's 404/405 and FastAPI's 400 for an unreadable body get the error body
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cur = service.loaded
        body = {"error": exc.detail, "model_version": cur.info.model_version if cur else None}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 naming each bad field (location, message), with the model version like every other response."""
        endpoint = "rank" if request.url.path == "/v1/rank" else "recommendations"
        requests.labels(endpoint, "422").inc()
        cur = service.loaded
        bad = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        body = {"error": "invalid request", "errors": bad, "model_version": cur.info.model_version if cur else None}
        return JSONResponse(body, status_code=422)

    app.add_middleware(
        BodyLimit,
        limit=cfg.max_body_bytes,
        header_limit=cfg.max_header_bytes,
        version=lambda: service.loaded.info.model_version if service.loaded else None,
    )
    return app
