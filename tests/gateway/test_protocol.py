"""The gateway's JSON-RPC contract: auth first, errors that keep the socket open, limits."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

from websockets.asyncio.client import connect

from tests.gateway.conftest import GatewayClient, Served, make_account, open_gateway
from voicechat.auth.sessions import SessionStore
from voicechat.cache.client import create_cache
from voicechat.gateway import MAX_FRAME_BYTES, CloseCode, RpcErrorCode
from voicechat.settings import Settings


async def test_auth_answers_with_the_user_and_heartbeat(served: Served) -> None:
    alice = await make_account(served.http, "alice")
    async with connect(served.ws_url) as ws:
        client = GatewayClient(ws)
        answer = await client.request("auth", {"token": alice.token})
        result = answer["result"]
        assert result["user"]["id"] == alice.id
        assert result["user"]["username"] == "alice"
        assert result["heartbeat_interval"] > 0
        assert result["session_id"]
        assert (await client.request("ping"))["result"] == "pong"


async def test_no_auth_within_the_deadline_closes_4001(served: Served) -> None:
    served.resources.gateway.config.auth_timeout = 0.5
    async with connect(served.ws_url) as ws:
        assert await GatewayClient(ws).close_code() == CloseCode.NOT_AUTHENTICATED


async def test_a_first_request_other_than_auth_closes_4001(served: Served) -> None:
    async with connect(served.ws_url) as ws:
        client = GatewayClient(ws)
        answer = await client.request("ping")
        assert answer["error"]["code"] == RpcErrorCode.INVALID_REQUEST
        assert await client.close_code() == CloseCode.NOT_AUTHENTICATED


async def test_a_bad_token_is_refused_and_closes_4003(served: Served) -> None:
    alice = await make_account(served.http, "alice")
    for token in ["not-a-jwt", alice.token[:-4] + "AAAA"]:
        async with connect(served.ws_url) as ws:
            client = GatewayClient(ws)
            answer = await client.request("auth", {"token": token})
            assert answer["error"]["code"] == RpcErrorCode.UNAUTHORIZED
            assert await client.close_code() == CloseCode.AUTHENTICATION_FAILED


async def test_a_logged_out_session_cannot_open_a_socket(served: Served) -> None:
    alice = await make_account(served.http, "alice")
    response = await served.http.post("/auth/logout", headers=alice.headers)
    assert response.status_code == 204
    async with connect(served.ws_url) as ws:
        client = GatewayClient(ws)
        answer = await client.request("auth", {"token": alice.token})
        assert answer["error"]["code"] == RpcErrorCode.UNAUTHORIZED
        assert await client.close_code() == CloseCode.AUTHENTICATION_FAILED


async def test_invalid_frames_get_errors_and_the_socket_stays_open(served: Served) -> None:
    alice = await make_account(served.http, "alice")
    client = await open_gateway(served.ws_url, alice.token)
    ws = client.ws
    cases: list[tuple[str | bytes, int, object]] = [
        ("{not json", RpcErrorCode.PARSE_ERROR, None),
        ("[1, 2]", RpcErrorCode.INVALID_REQUEST, None),
        ('"ping"', RpcErrorCode.INVALID_REQUEST, None),
        ('{"id": 7, "method": "ping"}', RpcErrorCode.INVALID_REQUEST, 7),
        ('{"jsonrpc": "2.0", "id": 8}', RpcErrorCode.INVALID_REQUEST, 8),
        ('{"jsonrpc": "2.0", "id": 9, "method": "nope"}', RpcErrorCode.METHOD_NOT_FOUND, 9),
        (
            '{"jsonrpc": "2.0", "id": 10, "method": "ping", "params": [1]}',
            RpcErrorCode.INVALID_PARAMS,
            10,
        ),
        (
            '{"jsonrpc": "2.0", "id": 11, "method": "typing.start", "params": {"channel_id": 3}}',
            RpcErrorCode.INVALID_PARAMS,
            11,
        ),
        (
            '{"jsonrpc": "2.0", "id": 12, "method": "typing.start",'
            ' "params": {"channel_id": "not-a-uuid"}}',
            RpcErrorCode.INVALID_PARAMS,
            12,
        ),
        (
            '{"jsonrpc": "2.0", "id": 13, "method": "presence.set", "params": {"status": "away"}}',
            RpcErrorCode.INVALID_PARAMS,
            13,
        ),
        ('{"jsonrpc": "2.0", "id": 14, "method": "auth", "params": {}}', -32600, 14),
        (b"\x00\x01binary", RpcErrorCode.INVALID_REQUEST, None),
    ]
    for frame, code, request_id in cases:
        await ws.send(frame)
        answer = await _next_answer(client)
        assert answer["jsonrpc"] == "2.0"
        assert answer["id"] == request_id, (frame, answer)
        assert answer["error"]["code"] == code, (frame, answer)
        assert answer["error"]["message"]
    # A notification (no id) that fails gets no answer; the next request does.
    await ws.send('{"jsonrpc": "2.0", "method": "nope"}')
    assert (await client.request("ping"))["result"] == "pong"
    await ws.close()


async def test_voice_methods_check_their_params(served: Served) -> None:
    alice = await make_account(served.http, "alice")
    client = await open_gateway(served.ws_url, alice.token)
    # A user id is no channel: the voice service answers like the rest of the gateway.
    unknown = await client.request("voice.join", {"channel_id": alice.id})
    assert unknown["error"]["code"] == RpcErrorCode.NOT_FOUND
    malformed = await client.request("voice.join", {"channel_id": "x"})
    assert malformed["error"]["code"] == RpcErrorCode.INVALID_PARAMS
    not_joined = await client.request("voice.leave", {"channel_id": alice.id})
    assert not_joined["error"]["code"] == RpcErrorCode.INVALID_REQUEST
    await client.ws.close()


async def test_an_oversized_frame_closes_1009(served: Served) -> None:
    alice = await make_account(served.http, "alice")
    client = await open_gateway(served.ws_url, alice.token)
    # Just under the limit is fine (and answered: it is not JSON).
    await client.ws.send("x" * (MAX_FRAME_BYTES - 16))
    assert (await _next_answer(client))["error"]["code"] == RpcErrorCode.PARSE_ERROR
    await client.ws.send(
        json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "x" * MAX_FRAME_BYTES}}
        )
    )
    assert await client.close_code() == CloseCode.MESSAGE_TOO_BIG


async def test_flooding_gets_rate_limited_then_closed_4008(served: Served) -> None:
    alice = await make_account(served.http, "alice")
    client = await open_gateway(served.ws_url, alice.token)
    config = served.resources.gateway.config
    sent = config.rate_burst + config.abuse_strikes + 20
    for i in range(sent):
        await client.ws.send(json.dumps({"jsonrpc": "2.0", "id": 100 + i, "method": "ping"}))
    answers = []
    code = None
    try:
        async with asyncio.timeout(10):
            while True:
                answers.append(json.loads(await client.ws.recv()))
    except Exception as closed:  # ConnectionClosed
        code = getattr(getattr(closed, "rcvd", None), "code", None)
    pongs = [a for a in answers if a.get("result") == "pong"]
    limited = [a for a in answers if a.get("error", {}).get("code") == RpcErrorCode.RATE_LIMITED]
    assert len(pongs) >= config.rate_burst
    assert limited, answers[-3:]
    assert limited[0]["error"]["data"]["retry_after"] >= 1
    assert code == CloseCode.RATE_LIMITED


async def test_a_silent_socket_is_closed_after_the_heartbeat_timeout(served: Served) -> None:
    served.resources.gateway.config.heartbeat_timeout = 0.6
    alice = await make_account(served.http, "alice")
    client = await open_gateway(served.ws_url, alice.token)
    # Pinging keeps it open past the timeout...
    for _ in range(4):
        await asyncio.sleep(0.3)
        assert (await client.request("ping"))["result"] == "pong"
    # ...silence closes it.
    assert await client.close_code() == CloseCode.HEARTBEAT_TIMEOUT


async def _next_answer(client: GatewayClient) -> dict[str, Any]:
    """The next frame that answers a request (notifications such as presence are skipped)."""
    while True:
        frame: dict[str, Any] = json.loads(await client.ws.recv())
        if "id" in frame:
            return frame


async def test_logging_out_closes_the_sessions_sockets(served: Served) -> None:
    served.resources.gateway.config.session_check_interval = 0.3
    alice = await make_account(served.http, "alice")
    client = await open_gateway(served.ws_url, alice.token)
    assert (await client.request("ping"))["result"] == "pong"
    response = await served.http.post("/auth/logout", headers=alice.headers)
    assert response.status_code == 204
    assert await client.close_code(within=5) == CloseCode.AUTHENTICATION_FAILED


async def test_a_logout_closes_the_sockets_at_once_not_at_the_periodic_check(
    served: Served,
) -> None:
    # With the periodic check an hour away, only the revocation itself can close the socket.
    served.resources.gateway.config.session_check_interval = 3600
    alice = await make_account(served.http, "alice")
    client = await open_gateway(served.ws_url, alice.token)
    assert (await client.request("ping"))["result"] == "pong"
    response = await served.http.post("/auth/logout", headers=alice.headers)
    assert response.status_code == 204
    assert await client.close_code(within=5) == CloseCode.AUTHENTICATION_FAILED


async def test_a_session_ended_by_another_instance_closes_its_sockets_here(
    served: Served, settings: Settings
) -> None:
    served.resources.gateway.config.session_check_interval = 3600
    alice = await make_account(served.http, "alice")
    bob = await make_account(served.http, "bob")
    alice_socket = await open_gateway(served.ws_url, alice.token)
    bob_socket = await open_gateway(served.ws_url, bob.token)
    listed = await served.http.get("/auth/sessions", headers=alice.headers)
    (session_id,) = [s["id"] for s in listed.json() if s["current"]]
    # Another API process on the same Valkey ends the session (its own client and store).
    assert settings.valkey_url is not None
    other = create_cache(settings.valkey_url.get_secret_value())
    try:
        store = SessionStore(other, ttl_seconds=3600, grace_seconds=10)
        assert await store.revoke(UUID(session_id)) is not None
    finally:
        await other.aclose()
    assert await alice_socket.close_code(within=5) == CloseCode.AUTHENTICATION_FAILED
    # Only that session's sockets close.
    assert (await bob_socket.request("ping"))["result"] == "pong"
