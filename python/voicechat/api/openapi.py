"""The OpenAPI document lists every status each route answers (SPEC §11), in the error shape.

FastAPI documents the success answer and a 422 of its own shape; everything else a route
answers would be missing. Here the error statuses are derived from what a route is made of,
so a new route is documented by being written:

| the route has… | it may answer |
|---|---|
| any request at all | 400 (malformed, e.g. a bad `Content-Length`); 422 (the input guard) |
| `CurrentUser` among its dependencies | 401 |
| a dependency on the instance's resources (PostgreSQL, Valkey, …) | 503 with `Retry-After` |
| path parameters | 404 (nothing there, or not visible to the caller) |
| path or query parameters | 414 (a URL over the request-line limit, api/http_limits.py) |
| a JSON body | 400 also `invalid_json`, 413 (over 1 MiB) |

Statuses a route raises itself (403 for a permission, 409 for a conflict, 429 for a rate
limit, …) are named at the route with `responses=errors(403, 409)`. Every error response has
the one error schema (`ErrorResponse`, SPEC §3); 429 and 503 document `Retry-After`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import BaseRoute

from voicechat.api.deps import current_user, get_resources
from voicechat.error_codes import ErrorCode


class FieldError(BaseModel):
    """One field a validation error names."""

    field: str = Field(description="Dotted path of the field, e.g. `messages.<id>.*.body`.")
    message: str


class ErrorDetail(BaseModel):
    """SPEC §3: a code from the catalogue (docs/errors.md) and a message for a person."""

    model_config = ConfigDict(extra="allow")

    code: ErrorCode
    message: str
    request_id: str | None = Field(None, description="Quote it to an operator (X-Request-ID).")
    fields: list[FieldError] | None = Field(None, description="On 422: every invalid field.")


class ErrorResponse(BaseModel):
    """Every error answer of the API."""

    error: ErrorDetail


_DESCRIPTIONS: dict[int, str] = {
    400: "The request is malformed (a JSON body that is not JSON at all: `invalid_json`).",
    401: "No valid access token (missing, expired, or its session ended).",
    403: "Signed in, but not allowed.",
    404: "No such thing, or not visible to the caller.",
    409: "The change conflicts with existing state.",
    410: "A one-time code that was used or has expired.",
    414: "The URL is over the request-line limit.",
    413: "The body is over its size limit.",
    415: "The body's media type is not accepted.",
    422: "A field is invalid, or holds what the server cannot store (NUL, lone surrogate…).",
    429: "Rate limited: retry after `Retry-After` seconds.",
    502: "An upstream service (an SSO provider) answered badly.",
    503: "A dependency (PostgreSQL, Valkey, storage, …) is unavailable: retry later.",
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer"},
    }
}

_ERROR_REF = "#/components/schemas/ErrorResponse"


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for the error statuses a route raises itself (beyond the derived ones)."""
    return {status: {"description": _DESCRIPTIONS[status]} for status in statuses}


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for child in dependant.dependencies:
        yield from _dependants(child)


def derived_statuses(dependant: Dependant) -> set[int]:
    """The error statuses a route may answer by what it is made of (the table above)."""
    statuses = {400, 422}
    parts = list(_dependants(dependant))
    calls = {part.call for part in parts}
    if current_user in calls:
        statuses.add(401)
    if get_resources in calls:
        statuses.add(503)
    if any(part.path_params for part in parts):
        statuses.add(404)
    if any(part.path_params or part.query_params for part in parts):
        statuses.add(414)
    if any(part.body_params for part in parts):
        statuses.add(413)
    return statuses


def _error_response(status: int, described: dict[str, Any] | None) -> dict[str, Any]:
    description = (described or {}).get("description") or _DESCRIPTIONS.get(
        status, HTTPStatus(status).phrase
    )
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _ERROR_REF}}},
    }
    if status in (429, 503):
        response["headers"] = _RETRY_AFTER
    return response


def _is_own_model(response: dict[str, Any]) -> bool:
    """Whether a route documented this response with a model of its own (e.g. /health's 503)."""
    for media in response.get("content", {}).values():
        ref = media.get("schema", {}).get("$ref", "")
        if ref and not ref.endswith(("/HTTPValidationError", "/ErrorResponse")):
            return True
    return False


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[RouteContext]:
    # FastAPI keeps included routers as branches; their routes carry the prefixes applied.
    for context in iter_route_contexts(routes):
        if isinstance(context.original_route, APIRoute) and context.include_in_schema:
            yield context


def document_errors(schema: dict[str, Any], routes: Sequence[BaseRoute]) -> None:
    """Add every route's error statuses, in the error shape, to a generated document."""
    for route in _api_routes(routes):
        path = schema["paths"].get(route.path_format, {})
        for method in route.methods or ():
            operation = path.get(method.lower())
            if operation is None:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            statuses = derived_statuses(route.dependant) | {
                int(code) for code in responses if code.isdigit() and int(code) >= 400
            }
            for status in sorted(statuses):
                existing = responses.get(str(status))
                if existing is not None and _is_own_model(existing):
                    continue
                responses[str(status)] = _error_response(status, existing)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorResponse"] = error_schema
    # FastAPI's own 422 shape is never answered: the error handler reshapes it.
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (served at /openapi.json) document every error status."""
    generate = app.openapi
    documented: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        schema = generate()
        if not any(schema is done for done in documented):
            document_errors(schema, app.routes)
            documented[:] = [schema]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
