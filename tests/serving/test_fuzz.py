"""Property-based fuzzing of the live HTTP API from its own OpenAPI document (schemathesis): a real uvicorn server on
127.0.0.1 serving a snapshot published from a real pipeline gets generated requests, valid and invalid, for every
operation, and each answer must conform to the document (a documented status code, content type, headers and body
schema) and never be a server error. Bounded and derandomized, so a run is repeatable and short (~10 s)."""

from __future__ import annotations

import copy

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from recsys.serving import RankingService, ServingConfig, SQLiteSnapshotStore
from recsys.serving.schemas import ID_PATTERN
from tests.serving.test_app import TOKEN, Server, create_app

CFG = ServingConfig(admin_token=TOKEN, reload_interval_s=0.2, max_k=50)
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# The operations are collected from the document the app builds for CFG, which needs no store (nothing is read
# before startup). `schemathesis.pytest.from_fixture` would load it from the running server instead, but that lazy
# loader breaks under pytest 9.2 (it sets `node._nodeid`, which pytest 9.2 no longer has); the live servers below
# are checked to serve exactly this document.
DOCUMENT = create_app(RankingService(None, CFG), start_reloader=False).openapi()  # type: ignore[arg-type]
schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT))


@pytest.fixture(scope="module")
def live(published):
    """The service on a real uvicorn server on 127.0.0.1, over the published snapshot and champion model."""
    with Server(create_app(RankingService(published["store"], CFG))) as http:
        assert http.get("/openapi.json").json() == DOCUMENT
        yield http


@schema.parametrize()
@settings(
    max_examples=50,
    derandomize=True,  # the same cases every run
    database=None,  # nothing written to .hypothesis/ in the working tree
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_live_api_conforms_to_its_openapi_document(case, live):
    # All of schemathesis' checks: not_a_server_error, status code / content type / headers / schema conformance,
    # negative data rejected, positive data accepted, auth not ignored (the admin route gets the token; the check
    # also sends it without), unsupported methods answered 405.
    case.call_and_validate(base_url=str(live.base_url), headers=AUTH)


CONFORMANCE = ("status_code_conformance", "content_type_conformance", "response_headers_conformance")


def conforms(method: str, path: str, response) -> None:
    """`response` has a documented status code, content type, headers and body schema for the operation."""
    checks = [getattr(schemathesis.checks, name) for name in CONFORMANCE]
    params = {"user_id": "u1"} if "{user_id}" in path else None
    schema[path][method].Case(path_parameters=params).validate_response(response, checks=checks)
    schema[path][method].validate_response(response)


def test_refusals_the_fuzzer_does_not_reach_conform_too(published, tmp_path):
    """Oversized bodies (413) and headers (431), unreadable bodies (400), bad tokens (401), admin disabled (404) and
    nothing loaded yet (503): each answer is one the document describes."""
    small = CFG.model_copy(update={"max_body_bytes": 1024, "max_header_bytes": 1024})
    user = published["lists"]["user_id"][0]
    with Server(create_app(RankingService(published["store"], small))) as http:
        assert http.get("/openapi.json").json() == DOCUMENT  # the limits are not in the document
        r = http.post("/v1/rank", json={"user_id": user, "candidates": [f"i{i}" for i in range(300)]})
        assert r.status_code == 413
        conforms("POST", "/v1/rank", r)
        r = http.post("/v1/rank", content=b'{"user_id": "\xff"}', headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]
        conforms("POST", "/v1/rank", r)
        pad = {"x-pad": "a" * 2000}
        for method, path, call in (
            ("GET", "/v1/users/{user_id}/recommendations", lambda: http.get(f"/v1/users/{user}/recommendations")),
            ("POST", "/v1/rank", lambda: http.post("/v1/rank", json={"user_id": user, "candidates": ["i1"]})),
            ("GET", "/healthz", lambda: http.get("/healthz")),
            ("GET", "/readyz", lambda: http.get("/readyz")),
            ("GET", "/metrics", lambda: http.get("/metrics")),
            ("POST", "/admin/reload", lambda: http.post("/admin/reload", headers=AUTH)),
        ):
            conforms(method, path, call())
            http.headers.update(pad)
            r = call()
            del http.headers["x-pad"]
            assert r.status_code == 431, (path, r.text)
            conforms(method, path, r)
        for header in (TOKEN, f"Basic {TOKEN}", "Bearer nope", "Bearer"):
            r = http.post("/admin/reload", headers={"Authorization": header})
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", header
            conforms("POST", "/admin/reload", r)
    empty = RankingService(SQLiteSnapshotStore(tmp_path / "empty.db"), CFG.model_copy(update={"admin_token": None}))
    with Server(create_app(empty)) as http:
        assert http.get("/openapi.json").json() == DOCUMENT
        for method, path, r in (
            ("GET", "/readyz", http.get("/readyz")),
            ("GET", "/v1/users/{user_id}/recommendations", http.get("/v1/users/u1/recommendations")),
            ("POST", "/v1/rank", http.post("/v1/rank", json={"user_id": "u1", "candidates": ["i1"]})),
            ("POST", "/admin/reload", http.post("/admin/reload", headers=AUTH)),
        ):
            assert r.status_code == (404 if path == "/admin/reload" else 503), (path, r.text)
            conforms(method, path, r)


def test_the_document_describes_errors_limits_and_ids():
    paths, schemas = DOCUMENT["paths"], DOCUMENT["components"]["schemas"]
    error = {"$ref": "#/components/schemas/ErrorBody"}
    assert set(schemas["ErrorBody"]["required"]) == {"error", "model_version"}  # `errors`: on validation errors
    assert set(schemas["ErrorBody"]["properties"]) == {"error", "errors", "model_version"}
    for path, operations in paths.items():
        for method, op in operations.items():
            codes = op["responses"]
            assert codes["431"]["content"]["application/json"]["schema"] == error, (method, path)
            assert ("413" in codes) == (method == "post"), (method, path)
            for code, response in codes.items():
                if code.startswith(("4", "5")) and path != "/readyz":
                    assert response["content"] == {"application/json": {"schema": error}}, (method, path, code)
    assert "HTTPValidationError" not in schemas  # 422 is the service's ErrorBody, not FastAPI's default
    metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    ranked = paths["/v1/rank"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ranked == {"$ref": "#/components/schemas/Ranking"}
    admin = paths["/admin/reload"]["post"]
    assert admin["security"] == [{"HTTPBearer": []}] and set(admin["responses"]) >= {"200", "401", "404"}
    assert DOCUMENT["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    body = schemas["RankRequest"]["properties"]
    assert body["candidates"]["items"]["pattern"] == ID_PATTERN and body["candidates"]["maxItems"] == 1000
    assert body["recent_items"]["anyOf"][0]["items"]["pattern"] == ID_PATTERN
    params = {p["name"]: p["schema"] for p in paths["/v1/users/{user_id}/recommendations"]["get"]["parameters"]}
    assert params["user_id"]["pattern"] == ID_PATTERN and params["k"]["maximum"] == 50
    assert ID_PATTERN.strip("^$") in params["exclude"]["anyOf"][0]["pattern"]
