"""Every error reaches the client in SPEC §3's shape, with a request id and no stack trace."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, ConfigDict, Field

from voicechat.errors import RateLimited


class Echo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=3)


probe = APIRouter(prefix="/_probe")


@probe.post("/echo")
async def echo(body: Echo) -> Echo:
    return body


@probe.get("/crash")
async def crash() -> None:
    raise RuntimeError("secret internals: password=hunter2")


@probe.get("/slow-down")
async def slow_down() -> None:
    raise RateLimited("too many attempts", retry_after=7)


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    # Probe routes exercise the error machinery with bodies and crashes the real API has too.
    app.include_router(probe)
    return app


def _assert_error_shape(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error


async def test_unknown_route(client: httpx.AsyncClient) -> None:
    error = _assert_error_shape(await client.get("/no/such/thing"), 404, "not_found")
    assert "/no/such/thing" in error["message"]


async def test_wrong_method(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health")
    _assert_error_shape(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


async def test_invalid_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/_probe/echo", content=b'{"name": "abc",', headers={"content-type": "application/json"}
    )
    _assert_error_shape(response, 400, "invalid_json")


async def test_validation_error_names_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/_probe/echo", json={"name": "ab"})
    error = _assert_error_shape(response, 422, "validation_error")
    assert error["message"].startswith("name:")


async def test_unknown_field_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/_probe/echo", json={"name": "abc", "admin": True})
    error = _assert_error_shape(response, 422, "validation_error")
    assert "admin" in error["message"]


async def test_unexpected_exception_hides_internals(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/_probe/crash")
    error = _assert_error_shape(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    # The operator finds the crash in the log under the id the client was given.
    crash_records = [r for r in caplog.records if r.name == "voicechat.api"]
    assert crash_records
    assert crash_records[0].exc_info is not None
    assert getattr(crash_records[0], "request_id", None) in (None, error["request_id"])


async def test_rate_limited_carries_retry_after(client: httpx.AsyncClient) -> None:
    response = await client.get("/_probe/slow-down")
    _assert_error_shape(response, 429, "rate_limited")
    assert response.headers["retry-after"] == "7"


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    body = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    response = await client.post(
        "/_probe/echo", content=body, headers={"content-type": "application/json"}
    )
    _assert_error_shape(response, 413, "payload_too_large")


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
async def test_oversized_chunked_body_is_413(client: httpx.AsyncClient, content_type: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit can only be noticed while the body streams in.
        yield b'{"name": "'
        for _ in range(20):
            yield b"x" * (64 * 1024)
        yield b'"}'

    response = await client.post(
        "/_probe/echo", content=chunks(), headers={"content-type": content_type}
    )
    assert "content-length" not in response.request.headers
    _assert_error_shape(response, 413, "payload_too_large")


async def test_client_request_id_is_kept(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope", headers={"x-request-id": "proxy-abc-12345"})
    assert response.headers["x-request-id"] == "proxy-abc-12345"
    assert response.json()["error"]["request_id"] == "proxy-abc-12345"


async def test_hostile_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    hostile = "a\u00e9<script>".encode()
    response = await client.get("/nope", headers={"x-request-id": hostile})
    assert response.headers["x-request-id"].isalnum()
