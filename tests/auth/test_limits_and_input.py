"""Rate limits per account and per IP, and bad input answered in the error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from tests.utils.auth import DEFAULT_PASSWORD, register
from voicechat.api import create_app
from voicechat.settings import Settings


@asynccontextmanager
async def _clients(app: FastAPI, *ips: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One HTTP client per source address, all on the same app."""
    async with app.router.lifespan_context(app):
        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=(ip, 40000)),
                base_url="http://testserver",
            )
            for ip in ips
        ]
        try:
            yield clients
        finally:
            for c in clients:
                await c.aclose()


async def _login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/auth/login", json={"username": username, "password": password})


async def test_failed_logins_are_limited_per_account(
    settings_factory: Callable[..., Settings], database_url: str, clean_valkey: str
) -> None:
    app = create_app(
        settings_factory(
            database_url=database_url, valkey_url=clean_valkey, rate_limit_login="3/minute"
        )
    )
    async with _clients(app, "10.0.0.1", "10.0.0.2") as (first, second):
        await register(first, "sam")
        statuses = [(await _login(first, "sam", "wrong-password")).status_code for _ in range(3)]
        assert statuses == [401, 401, 401]
        limited = await _login(first, "sam", "wrong-password")
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limited"
        # The account is locked from everywhere, even with the right password...
        assert (await _login(second, "sam", DEFAULT_PASSWORD)).status_code == 429
        # ...while other accounts are not.
        await register(second, "tina")
        assert (await _login(second, "tina", DEFAULT_PASSWORD)).status_code == 200


async def test_logins_are_limited_per_ip(
    settings_factory: Callable[..., Settings], database_url: str, clean_valkey: str
) -> None:
    app = create_app(
        settings_factory(
            database_url=database_url, valkey_url=clean_valkey, rate_limit_login_ip="4/minute"
        )
    )
    async with _clients(app, "10.0.0.3", "10.0.0.4") as (noisy, quiet):
        await register(quiet, "uma")
        statuses = [
            (await _login(noisy, f"guess{i}", "wrong-password")).status_code for i in range(5)
        ]
        assert statuses == [401, 401, 401, 401, 429]
        assert (await _login(quiet, "uma", DEFAULT_PASSWORD)).status_code == 200


async def test_registrations_are_limited_per_ip(
    settings_factory: Callable[..., Settings], database_url: str, clean_valkey: str
) -> None:
    app = create_app(
        settings_factory(
            database_url=database_url, valkey_url=clean_valkey, rate_limit_register_ip="2/hour"
        )
    )
    async with _clients(app, "10.0.0.5") as (client,):
        await register(client, "vic1")
        await register(client, "vic2")
        response = await client.post(
            "/auth/register", json={"username": "vic3", "password": DEFAULT_PASSWORD}
        )
        assert response.status_code == 429
        assert "retry-after" in response.headers


def _assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code


async def test_malformed_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/login", content=b"{username: x", headers={"content-type": "application/json"}
    )
    _assert_error(response, 400, "invalid_json")


async def test_body_over_one_mebibyte(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/register",
        content=b'{"username": "' + b"a" * (1024 * 1024 + 1) + b'"}',
        headers={"content-type": "application/json"},
    )
    _assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    "username", ["ab", "a" * 33, "has space", "émile", "semi;colon", "", "../etc"]
)
async def test_usernames_outside_the_allowed_set(client: httpx.AsyncClient, username: str) -> None:
    response = await client.post(
        "/auth/register", json={"username": username, "password": DEFAULT_PASSWORD}
    )
    _assert_error(response, 422, "validation_error")
    assert response.json()["error"]["message"].startswith("username")


@pytest.mark.parametrize("password", ["short", "x" * 129])
async def test_password_length(client: httpx.AsyncClient, password: str) -> None:
    response = await client.post("/auth/register", json={"username": "wendy", "password": password})
    _assert_error(response, 422, "validation_error")
    assert "password" in response.json()["error"]["message"]


async def test_unknown_fields(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/register",
        json={"username": "xavier", "password": DEFAULT_PASSWORD, "is_admin": True},
    )
    _assert_error(response, 422, "validation_error")
    assert "is_admin" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"username": "a"},
        {"username": "a", "password": "b", "provider": "x"},
        {"provider": "x", "password": "b"},
        {"username": "a", "password": "b", "redirect_uri": "http://127.0.0.1/cb"},
        [],
        "text",
        {"username": 5, "password": ["x"]},
    ],
)
async def test_malformed_login_bodies(client: httpx.AsyncClient, body: object) -> None:
    response = await client.post("/auth/login", json=body)
    _assert_error(response, 422, "validation_error")


async def test_unknown_sso_provider(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/login", json={"provider": "nope"})
    _assert_error(response, 404, "unknown_provider")


@pytest.mark.parametrize("token", ["", "x" * 300])
async def test_bad_refresh_tokens(client: httpx.AsyncClient, token: str) -> None:
    response = await client.post("/auth/refresh", json={"refresh_token": token})
    _assert_error(response, 422)


async def test_unknown_refresh_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/refresh", json={"refresh_token": "not-a-real-token"})
    _assert_error(response, 401, "invalid_refresh_token")


async def test_malformed_ids(client: httpx.AsyncClient) -> None:
    tokens = await register(client, "yara")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    _assert_error(await client.get("/users/not-a-uuid", headers=headers), 422)
    _assert_error(
        await client.get("/users/00000000-0000-0000-0000-000000000000", headers=headers),
        404,
        "user_not_found",
    )
    _assert_error(await client.delete("/auth/sessions/xyz", headers=headers), 422)
