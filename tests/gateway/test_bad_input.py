"""The gateway refuses frames carrying what the server cannot store, and survives bad UTF-8.

A NUL or a lone surrogate anywhere in a frame (method, id, any param) is refused by the frame
parser (`gateway/protocol.py`) with -32602 and `data.code` `validation_error`; the socket stays
open. A text frame that is not UTF-8 at all closes the socket with 1007 (RFC 6455), logged as
one WARNING line at most.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.gateway.conftest import GatewayClient, Served, make_account, open_gateway
from voicechat.error_codes import RpcErrorCode
from voicechat.gateway.protocol import CloseCode

NUL = "a\u0000b"
LONE_SURROGATE = "a\ud800b"

# op -> (params carrying the bad text, the field the refusal names); {channel} is a real id.
PARAMS: dict[str, tuple[dict[str, Any], str]] = {
    "ping": ({"note": "{bad}"}, "params.note"),
    "typing.start": ({"channel_id": "{bad}"}, "params.channel_id"),
    "typing.stop": ({"channel_id": "{bad}"}, "params.channel_id"),
    "presence.set": ({"status": "{bad}"}, "params.status"),
    "voice.join": ({"channel_id": "{bad}"}, "params.channel_id"),
    "voice.offer": ({"channel_id": "{channel}", "sdp": "v=0\r\n{bad}"}, "params.sdp"),
    "voice.answer": ({"channel_id": "{channel}", "sdp": "{bad}"}, "params.sdp"),
    "voice.ice": ({"channel_id": "{channel}", "candidate": "{bad}"}, "params.candidate"),
    "voice.mute": ({"channel_id": "{channel}", "{bad}": True}, "params"),
    "voice.unmute": ({"channel_id": "{channel}", "note": "{bad}"}, "params.note"),
    "voice.leave": ({"channel_id": "{channel}", "reason": ["ok", "{bad}"]}, "params.reason.1"),
}


def _fill(value: Any, bad: str, channel: str) -> Any:
    if isinstance(value, str):
        return value.replace("{bad}", bad).replace("{channel}", channel)
    if isinstance(value, list):
        return [_fill(item, bad, channel) for item in value]
    if isinstance(value, dict):
        return {_fill(k, bad, channel): _fill(v, bad, channel) for k, v in value.items()}
    return value


async def _answer_to(client: GatewayClient, frame: dict[str, Any]) -> dict[str, Any]:
    # json.dumps escapes a lone surrogate as \ud800, as a client library would send it.
    await client.ws.send(json.dumps(frame))
    return await client.answer(frame.get("id"))


def _assert_refused(answer: dict[str, Any], field: str) -> None:
    error = answer["error"]
    assert error["code"] == RpcErrorCode.INVALID_PARAMS, answer
    assert error["data"]["code"] == "validation_error"
    assert error["data"]["field"] == field
    assert error["message"].startswith(field)


@pytest.mark.parametrize("bad", [NUL, LONE_SURROGATE], ids=["nul", "lone-surrogate"])
async def test_every_op_refuses_unstorable_text(served: Served, bad: str) -> None:
    alice = await make_account(served.http, "alice")
    channel = await served.http.post(
        "/channels", json={"name": "lounge", "type": "voice"}, headers=alice.headers
    )
    assert channel.status_code == 201, channel.text
    # Every op the gateway serves is in the table (a new op must be added to it).
    assert set(served.resources.gateway.methods) <= set(PARAMS)
    client = await open_gateway(served.ws_url, alice.token)
    for number, (op, (params, field)) in enumerate(PARAMS.items(), start=100):
        filled = _fill(params, bad, channel.json()["id"])
        frame = {"jsonrpc": "2.0", "id": number, "method": op, "params": filled}
        answer = await _answer_to(client, frame)
        assert answer["id"] == number
        _assert_refused(answer, field)
    # Bad text in the method name or the id itself.
    answer = await _answer_to(client, {"jsonrpc": "2.0", "id": 1, "method": f"ping{bad}"})
    _assert_refused(answer, "method")
    await client.ws.send(json.dumps({"jsonrpc": "2.0", "id": bad, "method": "ping"}))
    answer = await client.answer(None)
    _assert_refused(answer, "id")
    assert (await client.request("ping"))["result"] == "pong"
    await client.ws.close()


@pytest.mark.parametrize("bad", [NUL, LONE_SURROGATE], ids=["nul", "lone-surrogate"])
async def test_an_auth_token_with_unstorable_text_is_refused(served: Served, bad: str) -> None:
    async with connect(served.ws_url) as ws:
        client = GatewayClient(ws)
        answer = await _answer_to(
            client, {"jsonrpc": "2.0", "id": 1, "method": "auth", "params": {"token": bad}}
        )
        _assert_refused(answer, "params.token")
        assert await client.close_code() == 4001


async def test_numbers_and_nesting_the_server_cannot_store_are_refused(served: Served) -> None:
    alice = await make_account(served.http, "alice")
    client = await open_gateway(served.ws_url, alice.token)
    for number, value in enumerate(["NaN", "Infinity", "1e999", "99999999999999999999"]):
        await client.ws.send(
            f'{{"jsonrpc":"2.0","id":{number},"method":"ping","params":{{"n":{value}}}}}'
        )
        _assert_refused(await client.answer(number), "params.n")
    deep = "[" * 2000 + "]" * 2000
    await client.ws.send(f'{{"jsonrpc":"2.0","id":9,"method":"ping","params":{{"n":{deep}}}}}')
    answer = await client.answer(None)
    assert answer["error"]["code"] == RpcErrorCode.PARSE_ERROR
    assert (await client.request("ping"))["result"] == "pong"
    await client.ws.close()


def _masked_text_frame(payload: bytes) -> bytes:
    # A client frame (FIN, opcode 1 = text) with a zero mask: the bytes go out as they are.
    assert len(payload) < 126
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + b"\0\0\0\0" + payload


async def test_invalid_utf8_closes_1007_with_one_warning_at_most(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await make_account(served.http, "alice")
    client = await open_gateway(served.ws_url, alice.token)
    caplog.set_level(logging.DEBUG)
    # The websockets library refuses to send invalid UTF-8 as text: write the frame ourselves.
    transport = client.ws.transport
    transport.write(_masked_text_frame(b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe"}'))
    assert await client.close_code() == CloseCode.INVALID_PAYLOAD
    await asyncio.sleep(0.2)  # let the server finish its side of the close
    noisy = [r for r in caplog.records if r.levelno > logging.WARNING or r.exc_info]
    assert noisy == []
    # The server is fine: a new socket works.
    again = await open_gateway(served.ws_url, alice.token)
    assert (await again.request("ping"))["result"] == "pong"
    await again.ws.close()


async def test_an_unmasked_client_frame_closes_1002(served: Served) -> None:
    alice = await make_account(served.http, "alice")
    client = await open_gateway(served.ws_url, alice.token)
    # RFC 6455 §5.1: a client frame must be masked; the server closes with a protocol error.
    payload = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    client.ws.transport.write(struct.pack("!BB", 0x81, len(payload)) + payload)
    assert await client.close_code() == CloseCode.PROTOCOL_ERROR
    again = await open_gateway(served.ws_url, alice.token)
    assert (await again.request("ping"))["result"] == "pong"
    await again.ws.close()
