"""A session that ended is refused everywhere within a second (docs/auth.md, "Access tokens").

Each process answers "is this session live?" from memory for up to a second; these tests hold
the contract that a client sees: across instances and worker processes sharing one Valkey, when
the revocation message is lost, and when the subscription that carries them is cut. They poll,
and assert only that every request sent once the window has passed is refused.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio import Redis

from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD, bearer, register
from voicechat.auth.live_sessions import REVOCATION_WINDOW_SECONDS
from voicechat.cache import keys

#: Requests sent after the window that must all be refused before a check passes.
AFTER_WINDOW = 5
#: Any check gives up after this long (a loaded machine is slow, never this slow).
GIVE_UP_SECONDS = 30.0


async def refused_within_the_window(
    request: Callable[[], Awaitable[httpx.Response]], ended_at: float
) -> None:
    """Poll `request`: any answer sent before the window passed may still be 200; every one
    sent after it must be 401 `session_revoked`."""
    window_end = ended_at + REVOCATION_WINDOW_SECONDS
    after = 0
    while after < AFTER_WINDOW:
        assert time.monotonic() < ended_at + GIVE_UP_SECONDS
        sent = time.monotonic()
        response = await request()
        if sent >= window_end:
            after += 1
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "session_revoked"
        else:
            assert response.status_code in (200, 401), response.text
        await asyncio.sleep(0.05)


async def _login(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    response = await http.post(
        "/auth/login", json={"username": username, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


def _fresh_connections(server: LiveServer) -> httpx.AsyncClient:
    # A new connection per request, so that requests reach every worker process of `server`.
    return httpx.AsyncClient(
        base_url=server.base_url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)
    )


async def test_a_session_ended_on_one_instance_is_refused_by_another_within_a_second(
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    shared = {
        "VOICECHAT_DATABASE_URL": database_url,
        "VOICECHAT_VALKEY_URL": clean_valkey,
        "VOICECHAT_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "VOICECHAT_JWT_PRIVATE_KEY": pem.decode(),
    }
    a = live_server_factory({**shared, "VOICECHAT_DATA_DIR": str(tmp_path / "a")})
    # Two worker processes: each keeps its own verdicts and must hear the revocation itself.
    b = live_server_factory(
        {**shared, "VOICECHAT_DATA_DIR": str(tmp_path / "b"), "VOICECHAT_WORKERS": "2"}
    )
    async with (
        httpx.AsyncClient(base_url=a.base_url, timeout=10) as on_a,
        _fresh_connections(b) as on_b,
    ):
        await register(on_a, "roaming")
        logged_out, revoked, reused = [await _login(on_a, "roaming") for _ in range(3)]

        async def me_on_b(tokens: dict[str, str]) -> httpx.Response:
            return await on_b.get("/users/@me", headers=bearer(tokens["access_token"]))

        # B has seen every session live (its verdicts are cached) before A ends them.
        for tokens in (logged_out, revoked, reused):
            for _ in range(6):
                assert (await me_on_b(tokens)).status_code == 200

        # Logout.
        response = await on_a.post("/auth/logout", headers=bearer(logged_out["access_token"]))
        assert response.status_code == 204
        await refused_within_the_window(lambda: me_on_b(logged_out), time.monotonic())

        # One session ended from another (DELETE /auth/sessions/{id}).
        target = await _current_session(on_a, revoked["access_token"])
        response = await on_a.delete(
            f"/auth/sessions/{target}", headers=bearer(reused["access_token"])
        )
        assert response.status_code == 204
        await refused_within_the_window(lambda: me_on_b(revoked), time.monotonic())

        # Refresh-token reuse ends the session (the second replay after a rotation).
        first = reused["refresh_token"]
        rotated = (await on_a.post("/auth/refresh", json={"refresh_token": first})).json()
        for _ in range(6):
            assert (await me_on_b(rotated)).status_code == 200
        for expected in ("refresh_token_rotated", "refresh_token_reused"):
            replay = await on_a.post("/auth/refresh", json={"refresh_token": first})
            assert replay.json()["error"]["code"] == expected
        await refused_within_the_window(lambda: me_on_b(rotated), time.monotonic())


async def _current_session(client: httpx.AsyncClient, token: str) -> str:
    listed = await client.get("/auth/sessions", headers=bearer(token))
    return str(next(s["id"] for s in listed.json() if s["current"]))


async def test_a_lost_revocation_message_still_ends_access_within_a_second(
    client: httpx.AsyncClient, clean_valkey: str
) -> None:
    token = (await register(client, "unlucky"))["access_token"]
    session_id = await _current_session(client, token)
    assert (await client.get("/users/@me", headers=bearer(token))).status_code == 200
    # The session disappears from Valkey without the message every instance listens for (as
    # if it was lost on the way): the verdict in memory expires on its own.
    async with Redis.from_url(clean_valkey) as valkey:
        assert await valkey.delete(keys.session(session_id)) == 1
    await refused_within_the_window(
        lambda: client.get("/users/@me", headers=bearer(token)), time.monotonic()
    )


async def test_a_cut_subscription_still_ends_access_within_a_second(
    client: httpx.AsyncClient, clean_valkey: str
) -> None:
    token = (await register(client, "cut"))["access_token"]
    other = await _login(client, "cut")
    session_id = await _current_session(client, token)
    assert (await client.get("/users/@me", headers=bearer(token))).status_code == 200
    async with Redis.from_url(clean_valkey) as valkey:
        # Every subscriber's connection is closed (a Valkey failover, a proxy timeout); the
        # session ends meanwhile, its message missed.
        await valkey.client_kill_filter(_type="pubsub")
        assert await valkey.delete(keys.session(session_id)) == 1
    await refused_within_the_window(
        lambda: client.get("/users/@me", headers=bearer(token)), time.monotonic()
    )
    # And afterwards (subscribed again) sessions keep working and ending.
    headers = bearer(other["access_token"])
    assert (await client.get("/users/@me", headers=headers)).status_code == 200
    assert (await client.post("/auth/logout", headers=headers)).status_code == 204
    refused = await client.get("/users/@me", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "session_revoked"
