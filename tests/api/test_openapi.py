"""The OpenAPI document lists every status a route answers, in the error shape (SPEC §11).

The statuses are derived from what routes are made of (`voicechat.api.openapi`); these tests
check the derivation on the real app, and that 405 names every method of its path. The
robustness suite (tests/robustness/test_fuzz.py) checks the answers against the document.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.utils.auth import ApiUser

ERROR_REF = "#/components/schemas/ErrorResponse"


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def _error_schema(operation: dict[str, Any], status: int) -> str:
    response = operation["responses"][str(status)]
    ref: str = response["content"]["application/json"]["schema"]["$ref"]
    return ref


async def test_every_operation_documents_its_errors_in_the_error_shape(
    document: dict[str, Any],
) -> None:
    for method, path, operation in _operations(document):
        responses = operation["responses"]
        label = f"{method} {path}"
        assert _error_schema(operation, 422) == ERROR_REF, label
        if operation.get("security"):
            assert _error_schema(operation, 401) == ERROR_REF, label
        if "{" in path:
            assert _error_schema(operation, 404) == ERROR_REF, label
        if "requestBody" in operation and "multipart" not in str(operation["requestBody"]):
            assert {"400", "413"} <= set(responses), label
        for status in ("429", "503"):
            if status in responses and path not in ("/health", "/health/ready"):
                assert responses[status]["headers"]["Retry-After"]["required"], label


async def test_routes_name_the_errors_they_raise(document: dict[str, Any]) -> None:
    def statuses(method: str, path: str) -> set[str]:
        return set(document["paths"][path][method]["responses"])

    assert {"409", "429"} <= statuses("post", "/auth/register")
    assert {"401", "429"} <= statuses("post", "/auth/login")
    assert {"403", "409"} <= statuses("post", "/roles")
    assert {"400", "403"} <= statuses("delete", "/channels/{channel_id}")
    assert {"404", "429"} <= statuses("post", "/keys/claim")
    assert "500" not in {s for _, _, op in _operations(document) for s in op["responses"]}


async def test_the_error_schema_is_the_one_the_api_answers(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    detail = schemas["ErrorDetail"]
    assert set(detail["required"]) == {"code", "message"}
    codes = schemas[detail["properties"]["code"]["$ref"].rsplit("/", 1)[-1]]["enum"]
    assert {"validation_error", "not_found", "rate_limited"} <= set(codes)


async def test_405_allows_every_method_of_the_path(
    client: httpx.AsyncClient, admin: ApiUser
) -> None:
    channel = await admin.channel(name="general")
    response = await admin.put(f"/channels/{channel['id']}", json={})
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["allow"] == "DELETE, GET, PATCH"
    response = await client.delete("/health")
    assert response.headers["allow"] == "GET"
