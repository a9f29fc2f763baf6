"""The HTTP service against a real uvicorn server on 127.0.0.1, serving a snapshot published from a real pipeline."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

import httpx
import numpy as np
import polars as pl
import pytest
import uvicorn

from recsys.nightly.publishing import publish, trending
from recsys.serving import RankingService, ServingConfig, SQLiteSnapshotStore
from recsys.serving.app import create_app
from tests.serving.conftest import free_port

TOKEN = "s3cret-token"


class Server:
    def __init__(self, app) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> httpx.Client:
        self.thread.start()
        for _ in range(400):
            if self.server.started:
                break
            time.sleep(0.025)
        assert self.server.started, "uvicorn did not start"
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        return self.client

    def __exit__(self, *exc) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)


def republish(published, store, frame: pl.DataFrame, fallback: pl.DataFrame, version: str):
    return publish(
        store,
        frame,
        fallback,
        model_version=version,
        bundle=published["bundle"],
        model=published["model"],
        dataset=published["dataset"],
    )


def service_for(published, **cfg) -> RankingService:
    base = {"admin_token": TOKEN, "reload_interval_s": 0.2, "max_k": 50}
    return RankingService(published["store"], ServingConfig(**(base | cfg)))


def test_lists_fallback_and_validation(published):
    lists: pl.DataFrame = published["lists"]
    user = lists["user_id"][0]
    expected = lists.filter(pl.col("user_id") == user).sort("rank")
    with Server(create_app(service_for(published))) as http:
        r = http.get(f"/v1/users/{user}/recommendations", params={"k": 5})
        assert r.status_code == 200
        body = r.json()
        assert [i["item_id"] for i in body["items"]] == expected["item_id"].head(5).to_list()
        assert [i["rank"] for i in body["items"]] == [1, 2, 3, 4, 5] and body["fallback"] is False
        assert body["model_version"] == "recsys/1" and body["snapshot_id"] == published["info"].snapshot_id
        assert r.headers["x-model-version"] == "recsys/1"
        first_two = ",".join(expected["item_id"].head(2).to_list())
        r = http.get(f"/v1/users/{user}/recommendations", params={"k": 3, "exclude": first_two})
        assert [i["item_id"] for i in r.json()["items"]] == expected["item_id"][2:5].to_list()

        cold = http.get("/v1/users/brand-new-user/recommendations", params={"k": 4}).json()
        trend = trending(published["dataset"].interactions, k=4)
        assert cold["fallback"] is True and "trending" in cold["fallback_reason"]
        assert [i["item_id"] for i in cold["items"]] == trend["item_id"].to_list()

        for params, status in (({"k": 0}, 422), ({"k": 51}, 422), ({"k": "ten"}, 422), ({"exclude": "a b"}, 422)):
            assert http.get(f"/v1/users/{user}/recommendations", params=params).status_code == status, params
        bad = http.get("/v1/users/bad%20id!/recommendations")
        assert bad.status_code == 422 and bad.json()["model_version"] == "recsys/1"
        assert bad.json()["errors"][0]["field"] == "path.user_id"
        assert http.get(f"/v1/users/{user}/recommendations", params={"k": 0}).json()["errors"][0]["field"] == "query.k"
        too_many = ",".join(f"i{i}" for i in range(501))
        assert http.get(f"/v1/users/{user}/recommendations", params={"exclude": too_many}).status_code == 422


def test_rank_endpoint(published):
    lists: pl.DataFrame = published["lists"]
    user = lists["user_id"][3]
    catalog = published["dataset"].items["item_id"].to_list()
    rng = np.random.default_rng(0)
    candidates = rng.choice(catalog, 150, replace=False).tolist()
    service = service_for(published)
    with Server(create_app(service)) as http:
        seen = service.loaded.model.state.seen_items(user)
        assert 0 < len(set(candidates) & seen) < 150  # the draw holds items the user already engaged with
        # by default, items the user already engaged with are left out (as in the published lists) and named
        default = http.post("/v1/rank", json={"user_id": user, "candidates": [*candidates, "not-in-catalog"]}).json()
        assert sorted(default["excluded_seen"]) == sorted(set(candidates) & seen)
        assert {i["item_id"] for i in default["items"]} == set(candidates) - seen | {"not-in-catalog"}
        r = http.post(
            "/v1/rank", json={"user_id": user, "candidates": [*candidates, "not-in-catalog"], "include_seen": True}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["method"] == "ranker" and body["model_version"] == "recsys/1" and body["excluded_seen"] == []
        scores = [i["score"] for i in body["items"] if i["score"] is not None]
        assert len(scores) == 150 and scores == sorted(scores, reverse=True)
        assert body["unknown_items"] == ["not-in-catalog"] and body["items"][-1]["item_id"] == "not-in-catalog"
        # the default scores are the pipeline's on the unseen candidates (features are relative to the list)
        unseen = [c for c in candidates if c not in seen]
        offline_unseen = service.loaded.model.rank_candidates(
            pl.DataFrame({"user_id": [user] * len(unseen), "item_id": unseen})
        )
        expected = dict(zip(offline_unseen["item_id"], offline_unseen["score"], strict=True))
        for i in default["items"][: len(unseen)]:
            assert i["score"] == pytest.approx(expected[i["item_id"]], rel=1e-9)
        # the same scores as the champion pipeline computes offline for those pairs
        offline = service.loaded.model.rank_candidates(pl.DataFrame({"user_id": [user] * 150, "item_id": candidates}))
        by_item = dict(zip(offline["item_id"], offline["score"], strict=True))
        for i in body["items"][:150]:
            assert i["score"] == pytest.approx(by_item[i["item_id"]], rel=1e-9)

        # nightly and online are one feature path: re-ranking a user's published list gives its published scores
        mine = lists.filter(pl.col("user_id") == user).sort("rank")
        body = http.post("/v1/rank", json={"user_id": user, "candidates": mine["item_id"].to_list()[::-1]}).json()
        assert [i["item_id"] for i in body["items"]] == mine["item_id"].to_list()
        assert [i["score"] for i in body["items"]] == mine["score"].to_list()

        session = http.post("/v1/rank", json={"recent_items": catalog[:3], "candidates": candidates[:20]}).json()
        assert session["method"] == "interest-match" and session["user_id"] is None
        assert set(session["excluded_seen"]) == set(candidates[:20]) & set(catalog[:3])
        assert len([i for i in session["items"] if i["score"] is not None]) == 20 - len(session["excluded_seen"])
        # a session's recent items are its seen items; catalog items are never reported unknown
        again = http.post("/v1/rank", json={"recent_items": catalog[:3], "candidates": catalog[:6]}).json()
        assert again["excluded_seen"] == catalog[:3] and [i["item_id"] for i in again["items"]] != []
        assert {i["item_id"] for i in again["items"]} == set(catalog[3:6]) and again["unknown_items"] == []
        trend = http.post("/v1/rank", json={"user_id": "nobody-new", "candidates": catalog[:50]}).json()
        assert trend["method"] == "trending" and trend["unknown_items"] == []

        bad = [
            {"candidates": candidates[:5]},  # neither user nor recent items
            {"user_id": user, "candidates": []},
            {"user_id": user, "candidates": ["a", "a"]},
            {"user_id": user, "candidates": ["white space"]},
            {"user_id": user, "candidates": [f"i{i}" for i in range(1001)]},
            {"user_id": "x y", "candidates": ["a"]},
        ]
        for payload in bad:
            assert http.post("/v1/rank", json=payload).status_code == 422, payload


def test_health_ready_metrics_openapi_admin(published, tmp_path):
    with Server(create_app(service_for(published))) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["model_version"] == "recsys/1"
        http.get("/v1/users/nobody/recommendations")
        metrics = http.get("/metrics").text
        assert 'recsys_requests_total{endpoint="recommendations",status="200"}' in metrics
        assert "recsys_fallback_total 1.0" in metrics
        spec = http.get("/openapi.json").json()
        assert {"/v1/users/{user_id}/recommendations", "/v1/rank", "/readyz"} <= set(spec["paths"])
        assert http.post("/admin/reload").status_code == 401
        assert http.post("/admin/reload", headers={"Authorization": "Bearer nope"}).status_code == 401
        bare = http.post("/admin/reload", headers={"Authorization": TOKEN})  # the right token, but not as a Bearer
        assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
        assert bare.json() == {"error": "bad or missing bearer token", "model_version": "recsys/1"}
        lower = http.post("/admin/reload", headers={"Authorization": f"bearer {TOKEN}"})  # schemes are case-insensitive
        assert lower.status_code == 200 and lower.json()["reloaded"] is False
        ok = http.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["reloaded"] is False
    # nothing published yet: alive but not ready; lists answer 503
    empty = RankingService(SQLiteSnapshotStore(tmp_path / "empty.db"), ServingConfig())
    with Server(create_app(empty)) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 503
        assert http.get("/v1/users/u1/recommendations").status_code == 503
        assert http.post("/admin/reload").status_code == 404  # no token configured: admin disabled


@pytest.mark.parametrize("in_memory", [True, False], ids=["lists-in-memory", "lists-from-the-store"])
def test_publish_during_concurrent_reads_and_hot_reload(published, in_memory):
    store: SQLiteSnapshotStore = published["store"]
    base: pl.DataFrame = published["lists"]
    users = base["user_id"].unique().sort().head(40).to_list()
    expected: dict[str, dict[str, list[str]]] = {}  # snapshot id -> user -> top-10 items

    def remember(info, frame):
        top = frame.filter(pl.col("rank") <= 10).sort("user_id", "rank")
        expected[info.snapshot_id] = {u: list(g["item_id"]) for (u,), g in top.group_by("user_id")}

    # the base lists current (an earlier run of this test left a rotated snapshot current)
    remember(republish(published, store, base, trending(published["dataset"].interactions, k=20), "recsys/1"), base)
    failures: list[str] = []
    responses: list[tuple[str, str, list[str]]] = []
    stop = threading.Event()
    service = service_for(published, lists_in_memory_max_entries=5_000_000 if in_memory else 0)
    with Server(create_app(service)) as http:
        assert service.lists_in_memory is in_memory
        port = http.base_url.port

        def reader(seed: int) -> None:
            rng = np.random.default_rng(seed)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
                while not stop.is_set():
                    u = users[rng.integers(len(users))]
                    r = c.get(f"/v1/users/{u}/recommendations", params={"k": 10})
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:100]}")
                        continue
                    body = r.json()
                    responses.append((body["snapshot_id"], u, [i["item_id"] for i in body["items"]]))

        threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
        for t in threads:
            t.start()
        for gen in range(2, 5):  # new nights: reversed / rotated lists, published while readers run
            frame = base.with_columns(((pl.col("rank") + gen * 7) % 50 + 1).alias("rank"))
            info = republish(published, store, frame, trending(published["dataset"].interactions, k=20), "recsys/1")
            remember(info, frame)
            time.sleep(0.8)  # the reloader polls every 0.2 s
        stop.set()
        for t in threads:
            t.join()
        final = http.get(f"/v1/users/{users[0]}/recommendations").json()
    assert not failures, failures[:5]
    mixed = [(sid, u) for sid, u, items in responses if items != expected[sid][u]]
    assert not mixed, mixed[:5]  # every answer is exactly one published snapshot's list
    seen = {sid for sid, _, _ in responses}
    assert final["snapshot_id"] == store.current().snapshot_id  # hot-reloaded to the newest
    assert len(seen) >= 3, f"readers saw only {seen}"


def test_service_over_the_redis_store(published, redis_url):
    """The same service reading snapshots published to a real redis-server."""
    from recsys.serving.redis_store import RedisSnapshotStore

    store = RedisSnapshotStore(redis_url, prefix="svc")
    lists: pl.DataFrame = published["lists"]
    info = republish(published, store, lists, trending(published["dataset"].interactions, k=10), "recsys/7")
    service = RankingService(store, ServingConfig(max_k=50))
    assert service.reload() and service.ready() == (True, "ok")
    user = lists["user_id"][5]
    body = service.recommendations(user, 10)
    assert body["snapshot_id"] == info.snapshot_id and body["model_version"] == "recsys/7"
    assert [i["item_id"] for i in body["items"]] == lists.filter(pl.col("user_id") == user).sort("rank")[
        "item_id"
    ].head(10).to_list()
    assert service.recommendations("nobody", 3)["fallback"] is True
    assert not service.reload()  # nothing new


def test_docs_render_offline_in_a_real_browser(published, tmp_path):
    """/docs (Swagger UI) and /redoc render in headless Chromium with every host but loopback unresolvable."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium not found: `apt-get install chromium` (.ci/run installs it)")
    with Server(create_app(service_for(published))) as http:
        page = http.get("/docs").text
        assert "/static-offline-docs/swagger-ui-bundle.js" in page and "cdn." not in page
        assert http.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
        rendered = {}
        for path in ("/docs", "/redoc"):
            run = subprocess.run(
                [
                    chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    f"--user-data-dir={tmp_path / 'profile'}",
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline: no CDN could answer
                    "--virtual-time-budget=20000",
                    "--dump-dom",
                    f"http://127.0.0.1:{http.base_url.port}{path}",
                ],
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            rendered[path] = run.stdout
        # the DOM after the scripts ran: operation blocks built by Swagger UI, the operation list built by ReDoc
        assert 'class="opblock' in rendered["/docs"] and "/v1/users/{user_id}/recommendations" in rendered["/docs"]
        assert "A user's ranked list" in rendered["/redoc"] and "<redoc" in rendered["/redoc"].lower()


def test_oversized_bodies_get_413_before_parsing(published):
    lists: pl.DataFrame = published["lists"]
    user = lists["user_id"][0]
    candidates = lists.filter(pl.col("user_id") == user)["item_id"].head(5).to_list()
    with Server(create_app(service_for(published, max_body_bytes=4096))) as http:
        ok = http.post("/v1/rank", json={"user_id": user, "candidates": candidates})
        assert ok.status_code == 200 and len(ok.json()["items"]) == 5
        big = orjson_bytes({"user_id": user, "candidates": ["x" * 100] * 100})  # ~10 KB, declared length
        r = http.post("/v1/rank", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "larger than 4096 bytes" in r.json()["error"]
        assert r.json()["model_version"] == "recsys/1"

        def chunks():  # no Content-Length: the limit holds while reading
            for _ in range(100):
                yield b" " * 1024

        r = http.post("/v1/rank", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "transfer-encoding" not in r.headers
        # the service is unharmed, and a small chunked body still works
        small = orjson_bytes({"user_id": user, "candidates": candidates})
        r = http.post("/v1/rank", content=iter([small[:10], small[10:]]), headers={"content-type": "application/json"})
        assert r.status_code == 200 and len(r.json()["items"]) == 5


def test_oversized_headers_get_431_on_every_endpoint(published):
    user = published["lists"]["user_id"][0]
    with Server(create_app(service_for(published, max_header_bytes=2048))) as http:
        assert http.get(f"/v1/users/{user}/recommendations", headers={"x-pad": "a" * 1000}).status_code == 200
        for r in (
            http.get(f"/v1/users/{user}/recommendations", headers={"x-pad": "a" * 4000}),
            http.get("/healthz", headers={"x-pad": "a" * 4000}),
            http.post("/v1/rank", json={"user_id": user, "candidates": ["i1"]}, headers={"x-pad": "a" * 4000}),
        ):
            assert r.status_code == 431, r.text
            assert "headers larger than 2048 bytes" in r.json()["error"] and r.json()["model_version"] == "recsys/1"
        assert http.get(f"/v1/users/{user}/recommendations").status_code == 200  # unharmed


def orjson_bytes(payload: dict) -> bytes:
    import orjson

    return orjson.dumps(payload)
