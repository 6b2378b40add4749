"""Input PostgreSQL cannot store is refused with 422 `validation_error`, never a 500.

PostgreSQL refuses NUL (U+0000) in `text` and `jsonb`, and a lone surrogate (which Python's
`json` decodes from `\\ud800`) cannot be encoded as UTF-8 at all. The API refuses both at one
place (`voicechat.api.input_guard`), whichever field carries them: these tests try the fields
that answered 500 before, in bodies, query strings and paths.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.utils.auth import DEFAULT_PASSWORD, ApiUser
from tests.utils.devices import TestDevice

NUL = "a\u0000b"
LONE_SURROGATE = "a\ud800b"


@dataclass
class World:
    """A channel, an encrypted channel, a message and a device, for alice (admin is admin)."""

    admin: ApiUser
    alice: ApiUser
    channel_id: str
    encrypted_channel_id: str
    message_id: str


@pytest.fixture
async def world(admin: ApiUser, alice: ApiUser) -> World:
    channel = await admin.channel(name="general")
    encrypted = await admin.channel(name="secret", encrypted=True)
    sent = await alice.post(f"/channels/{channel['id']}/messages", json={"content": "hello"})
    assert sent.status_code == 201, sent.text
    device = TestDevice(alice.id)
    uploaded = await alice.post("/keys/upload", json={"device_keys": device.device_keys()})
    assert uploaded.status_code == 200, uploaded.text
    return World(admin, alice, channel["id"], encrypted["id"], sent.json()["id"])


async def _send_json(
    client: httpx.AsyncClient, user: ApiUser | None, method: str, url: str, body: object
) -> httpx.Response:
    # json.dumps escapes a lone surrogate as \\ud800 (httpx's own encoder would refuse it).
    content = body if isinstance(body, str) else json.dumps(body)
    headers = {"content-type": "application/json", **(user.headers if user else {})}
    return await client.request(method, url, content=content.encode(), headers=headers)


def _ciphertext(algorithm: str) -> dict[str, str]:
    return {
        "algorithm": algorithm,
        "ciphertext": "AAAA",
        "sender_key": "BBBB",
        "session_id": "CCCC",
        "device_id": "DDDD",
    }


# field -> (who sends, method, url, body with the bad text), from the world's ids.
Case = Callable[[World, str], tuple[ApiUser | None, str, str, object]]

CASES: dict[str, Case] = {
    "message content": lambda w, bad: (
        w.alice,
        "POST",
        f"/channels/{w.channel_id}/messages",
        {"content": bad},
    ),
    "message nonce": lambda w, bad: (
        w.alice,
        "POST",
        f"/channels/{w.channel_id}/messages",
        {"content": "hi", "nonce": bad},
    ),
    "message edit": lambda w, bad: (
        w.alice,
        "PATCH",
        f"/messages/{w.message_id}",
        {"content": bad},
    ),
    "ciphertext algorithm": lambda w, bad: (
        w.admin,
        "POST",
        f"/channels/{w.encrypted_channel_id}/messages",
        _ciphertext(bad),
    ),
    "login username": lambda w, bad: (
        None,
        "POST",
        "/auth/login",
        {"username": bad, "password": DEFAULT_PASSWORD},
    ),
    "registration email": lambda w, bad: (
        None,
        "POST",
        "/auth/register",
        {"username": "newcomer", "password": DEFAULT_PASSWORD, "email": f"{bad}@x.io"},
    ),
    "display name": lambda w, bad: (w.alice, "PATCH", "/users/@me", {"display_name": bad}),
    "channel name": lambda w, bad: (w.admin, "POST", "/channels", {"name": bad, "type": "text"}),
    "channel topic": lambda w, bad: (w.admin, "PATCH", f"/channels/{w.channel_id}", {"topic": bad}),
    "role name": lambda w, bad: (w.admin, "POST", "/roles", {"name": bad}),
    "to-device content": lambda w, bad: (
        w.alice,
        "PUT",
        "/sendToDevice/txn1",
        {"type": "m.room_key", "messages": {w.admin.id: {"*": {"body": bad}}}},
    ),
    "to-device content key": lambda w, bad: (
        w.alice,
        "PUT",
        "/sendToDevice/txn2",
        {"type": "m.room_key", "messages": {w.admin.id: {"*": {bad: 1}}}},
    ),
}


async def _send_case(
    client: httpx.AsyncClient, world: World, field: str, bad: str
) -> httpx.Response:
    return await _send_json(client, *CASES[field](world, bad))


def _assert_refused(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["request_id"] == response.headers["x-request-id"]
    return error


@pytest.mark.parametrize("bad", [NUL, LONE_SURROGATE], ids=["nul", "lone-surrogate"])
@pytest.mark.parametrize("field", list(CASES))
async def test_unstorable_text_in_a_body_is_refused(
    client: httpx.AsyncClient, world: World, field: str, bad: str
) -> None:
    error = _assert_refused(await _send_case(client, world, field, bad))
    assert error["fields"][0]["message"]


async def test_the_refusal_names_the_field(client: httpx.AsyncClient, world: World) -> None:
    error = _assert_refused(await _send_case(client, world, "message content", NUL))
    assert error["fields"] == [{"field": "content", "message": "contains a NUL character"}]
    assert error["message"] == "content: contains a NUL character"


async def test_nested_fields_are_named_by_their_path(
    client: httpx.AsyncClient, world: World
) -> None:
    body = {"type": "m.room_key", "messages": {world.admin.id: {"*": {"list": ["ok", NUL]}}}}
    response = await _send_json(client, world.alice, "PUT", "/sendToDevice/txn3", body)
    error = _assert_refused(response)
    assert error["fields"][0]["field"] == f"messages.{world.admin.id}.*.list.1"


async def test_nothing_was_stored(client: httpx.AsyncClient, world: World) -> None:
    await _send_case(client, world, "message content", NUL)
    page = await world.alice.get(f"/channels/{world.channel_id}/messages")
    assert [m["content"] for m in page.json()["messages"]] == ["hello"]


@pytest.mark.parametrize(
    "url",
    [
        "/users?after=%00",
        "/users?after=a%00b&limit=5",
        "/users?%00=1",
        "/channels/%00/messages",
        "/users/%00",
    ],
)
async def test_nul_in_a_query_or_path_is_refused(world: World, url: str) -> None:
    _assert_refused(await world.alice.get(url))


@pytest.mark.parametrize(
    "value", ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "99999999999999999999"]
)
async def test_numbers_postgresql_cannot_store_are_refused(
    client: httpx.AsyncClient, world: World, value: str
) -> None:
    body = f'{{"type": "m.x", "messages": {{"{world.admin.id}": {{"*": {{"n": {value}}}}}}}}}'
    response = await _send_json(client, world.alice, "PUT", "/sendToDevice/txn4", body)
    _assert_refused(response)


async def test_deeply_nested_bodies_are_refused(client: httpx.AsyncClient, world: World) -> None:
    deep = "[" * 5000 + "]" * 5000
    body = f'{{"type": "m.x", "messages": {{"{world.admin.id}": {{"*": {{"n": {deep}}}}}}}}}'
    response = await _send_json(client, world.alice, "PUT", "/sendToDevice/txn5", body)
    _assert_refused(response)


async def test_invalid_json_is_still_400(client: httpx.AsyncClient, world: World) -> None:
    url = f"/channels/{world.channel_id}/messages"
    response = await _send_json(client, world.alice, "POST", url, '{"content": "a\\u0000')
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"


async def test_ordinary_text_passes(client: httpx.AsyncClient, world: World) -> None:
    text = 'émoji 🎉, a backslash \\u0000 spelled out, and "quotes"'
    url = f"/channels/{world.channel_id}/messages"
    response = await _send_json(client, world.alice, "POST", url, {"content": text})
    assert response.status_code == 201, response.text
    assert response.json()["content"] == text
