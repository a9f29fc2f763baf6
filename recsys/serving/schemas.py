"""The HTTP API's request and response bodies, as the OpenAPI document describes them to generated clients.

The service builds its JSON bodies as plain dicts and renders them with orjson (the hot paths never go through
these models); the models give `/openapi.json` the exact shape of what is sent. Request bodies are validated by
them, with the id pattern and list limits in the schema, so a client sees every constraint the server enforces.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

_ID = r"[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,127}"
ID_PATTERN = rf"^{_ID}$"
ID_MAX_LENGTH = 128
# `exclude`: comma-separated ids; empty parts ("a,,b", a trailing comma) are ignored
ID_LIST_PATTERN = rf"^(?:{_ID})?(?:,(?:{_ID})?)*$"

ItemId = Annotated[str, StringConstraints(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)]


class RankRequest(BaseModel):
    """Candidates to re-rank, for a known user (`user_id`) or an anonymous session (`recent_items`).

    The service subclasses this with its configured list limits (`create_app`), which the schema then carries."""

    # Either a user or a non-empty session history: the schema says so, so clients and fuzzers know it.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["user_id"], "properties": {"user_id": {"type": "string"}}},
                {"required": ["recent_items"], "properties": {"recent_items": {"type": "array", "minItems": 1}}},
            ]
        }
    )

    user_id: str | None = Field(None, pattern=ID_PATTERN, max_length=ID_MAX_LENGTH, examples=["u0001"])
    recent_items: list[ItemId] | None = Field(None, description="item ids the session engaged with, most recent last")
    candidates: list[ItemId] = Field(
        ..., min_length=1, description="item ids to order, each once", json_schema_extra={"uniqueItems": True}
    )
    include_seen: bool = Field(
        False,
        strict=True,  # a JSON boolean, as the schema says (lax mode would take 0, 1, "yes")
        description="keep items the user (or the session's recent_items) already engaged with; default: left out",
    )

    @model_validator(mode="after")
    def _check(self) -> RankRequest:
        if self.user_id is None and not self.recent_items:
            raise ValueError("give user_id or recent_items")
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError("candidates contain duplicates")
        return self


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    rank: int = Field(..., ge=1)


class Recommendations(BaseModel):
    """A user's published list, or the trending fallback (`fallback` true) for an unknown or cold user."""

    user_id: str
    items: list[RecommendedItem]
    fallback: bool
    fallback_reason: str | None
    model_version: str
    snapshot_id: str


class RankedItem(BaseModel):
    item_id: str
    score: float | None = Field(..., description="null: the item could not be scored (e.g. not in the catalog)")
    rank: int | None = Field(..., ge=1, description="null for unscored items, which come last")


class Ranking(BaseModel):
    """The candidates in the champion's order, with the items left out and those unknown to the catalog."""

    user_id: str | None
    method: Literal["ranker", "interest-match", "trending"]
    items: list[RankedItem]
    unknown_items: list[str]
    excluded_seen: list[str]
    model_version: str
    snapshot_id: str


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    """Ready (200) when lists can be served; 503 with the same body otherwise. The model's health is beside it."""

    ready: bool
    reason: str
    model: str = Field(..., description="'ok', 'off' or why re-ranking is unavailable")
    model_version: str | None
    snapshot_id: str | None
    last_error: str | None


class Reloaded(BaseModel):
    reloaded: bool = Field(..., description="true when a newer snapshot (or a repaired model) was loaded")
    model_version: str | None
    snapshot_id: str | None


class FieldError(BaseModel):
    field: str = Field(..., description="location and name, e.g. 'query.k' or 'body.candidates.3'")
    message: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx the service sends: what went wrong, each bad field (validation errors only), the version."""

    error: str
    errors: list[FieldError] | None = Field(None, description="present on 422 validation errors")
    model_version: str | None


_VERSION_HEADERS = {
    "X-Model-Version": {"description": "the model version that answered", "schema": {"type": "string"}},
    "X-Snapshot-Id": {"description": "the snapshot that answered", "schema": {"type": "string"}},
}
_ERRORS: dict[int, dict[str, Any]] = {
    400: {"description": "The body could not be read (not UTF-8 text)"},
    401: {
        "description": "Missing or bad bearer token",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
    404: {"description": "Admin endpoints are disabled (no admin token configured)"},
    413: {"description": "Request body larger than [serving] max_body_bytes"},
    422: {"description": "Invalid request; `errors` names each bad field"},
    431: {"description": "Request headers larger than [serving] max_header_bytes"},
    503: {"description": "No snapshot (or, for re-ranking, no model) loaded yet"},
}


def ok(description: str) -> dict[int | str, dict[str, Any]]:
    """The 200 response's description and the version headers it carries."""
    return {200: {"description": description, "headers": _VERSION_HEADERS}}


def errors(*codes: int, json_only: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all with the `ErrorBody`. `json_only`: for a route whose own
    media type is not JSON (FastAPI would give its media type to a `model`), the body referenced as JSON."""
    if json_only:
        body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        return {code: {**body, **_ERRORS[code]} for code in codes}
    return {code: {"model": ErrorBody, **_ERRORS[code]} for code in codes}
