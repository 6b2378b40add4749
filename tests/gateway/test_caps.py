"""Caps on gateway sockets: open sockets per user and per client address (across instances),
connection attempts per address and per user. A refused socket gets a JSON-RPC error (when
it sent `auth`) and close code 4029; nothing else is affected."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import connect

from tests.gateway.conftest import GatewayClient, make_account, serve_app
from voicechat.settings import Settings

TOO_MANY_CONNECTIONS = 4029


@dataclass
class Attempt:
    """How one connection attempt ended."""

    client: GatewayClient
    answer: dict[str, Any] | None
    close_code: int | None

    @property
    def admitted(self) -> bool:
        return self.answer is not None and "result" in self.answer

    @property
    def error_code(self) -> object:
        assert self.answer is not None
        assert "error" in self.answer, self.answer
        return self.answer["error"].get("data", {}).get("code")


async def attempt(ws_url: str, token: str, headers: dict[str, str] | None = None) -> Attempt:
    """Connect and send `auth`; a refused socket's answer and close code."""
    ws = await connect(ws_url, additional_headers=headers)
    client = GatewayClient(ws)
    try:
        await ws.send(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "auth", "params": {"token": token}})
        )
        answer = await client.answer(1)
    except Exception:
        return Attempt(client, None, await client.close_code())
    if "result" in answer:
        return Attempt(client, answer, None)
    return Attempt(client, answer, await client.close_code())


async def close_all(attempts: list[Attempt]) -> None:
    await asyncio.gather(*(a.client.ws.close() for a in attempts), return_exceptions=True)


async def test_the_per_user_cap_holds_across_instances(
    settings_factory: Callable[..., Settings], database_url: str, clean_valkey: str
) -> None:
    settings = settings_factory(
        database_url=database_url, valkey_url=clean_valkey, gateway_max_sockets_per_user=5
    )
    async with serve_app(settings) as a, serve_app(settings) as b:
        user = await make_account(a.http, "many")
        # Twelve at once, half on each instance: exactly five get in.
        attempts = await asyncio.gather(
            *(attempt((a if i % 2 else b).ws_url, user.token) for i in range(12))
        )
        try:
            admitted = [x for x in attempts if x.admitted]
            refused = [x for x in attempts if not x.admitted]
            assert len(admitted) == 5
            for refusal in refused:
                assert refusal.error_code == "too_many_sockets"
                assert refusal.close_code == TOO_MANY_CONNECTIONS
            # The admitted sockets work; closing one frees its place.
            assert (await admitted[0].client.request("ping"))["result"] == "pong"
            await admitted[0].client.ws.close()
            # (The server forgets the closed socket just after the close handshake.)
            for _ in range(50):
                again = await attempt(b.ws_url, user.token)
                attempts.append(again)
                if again.admitted:
                    break
                await asyncio.sleep(0.1)
            assert again.admitted
            assert (await attempt(a.ws_url, user.token)).close_code == TOO_MANY_CONNECTIONS
        finally:
            await close_all(attempts)


async def test_the_per_address_cap_counts_the_address_a_trusted_proxy_reports(
    settings_factory: Callable[..., Settings], database_url: str, clean_valkey: str
) -> None:
    settings = settings_factory(
        database_url=database_url, valkey_url=clean_valkey, gateway_max_sockets_per_ip=3
    )
    async with serve_app(settings) as served:
        alice = await make_account(served.http, "alice")
        bob = await make_account(served.http, "bob")
        attempts = [await attempt(served.ws_url, alice.token) for _ in range(2)]
        try:
            attempts.append(await attempt(served.ws_url, bob.token))
            assert all(x.admitted for x in attempts)
            # A fourth socket from the same address, whoever's, is refused.
            fourth = await attempt(served.ws_url, bob.token)
            attempts.append(fourth)
            assert fourth.error_code == "too_many_sockets"
            assert fourth.close_code == TOO_MANY_CONNECTIONS
            # Through the (trusted, loopback) proxy, another client's address has its own count.
            behind = await attempt(
                served.ws_url, bob.token, headers={"X-Forwarded-For": "203.0.113.9"}
            )
            attempts.append(behind)
            assert behind.admitted
        finally:
            await close_all(attempts)


async def test_connection_attempts_are_limited_per_address_and_per_user(
    settings_factory: Callable[..., Settings], database_url: str, clean_valkey: str
) -> None:
    settings = settings_factory(
        database_url=database_url,
        valkey_url=clean_valkey,
        rate_limit_gateway_ip="3/minute",
        rate_limit_gateway_user="2/minute",
    )
    async with serve_app(settings) as served:
        user = await make_account(served.http, "eager")
        attempts = [await attempt(served.ws_url, user.token) for _ in range(2)]
        try:
            assert all(x.admitted for x in attempts)
            # The user's third `auth` within the minute: refused, with when to retry.
            third = await attempt(served.ws_url, user.token)
            attempts.append(third)
            assert third.error_code == "rate_limited"
            assert third.answer is not None
            assert third.answer["error"]["code"] == -32029
            assert third.answer["error"]["data"]["retry_after"] >= 1
            assert third.close_code == TOO_MANY_CONNECTIONS
            # The address's fourth attempt is closed before it can even authenticate.
            fourth = await attempt(served.ws_url, user.token)
            attempts.append(fourth)
            assert fourth.answer is None
            assert fourth.close_code == TOO_MANY_CONNECTIONS
            # The sockets already open are untouched.
            assert (await attempts[0].client.request("ping"))["result"] == "pong"
        finally:
            await close_all(attempts)
