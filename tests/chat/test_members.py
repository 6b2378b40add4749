"""`GET /users` (the member list) and `GET /voice/states` (who is in which call) as clients
load them on connect."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from uuid import UUID

import httpx
import pytest

from tests.utils.auth import ApiUser, api_user
from voicechat.cache import Cache, create_cache, keys


@pytest.fixture
async def cache(clean_valkey: str) -> AsyncIterator[Cache]:
    """A direct client of this test's Valkey."""
    valkey = create_cache(clean_valkey)
    yield valkey
    await valkey.aclose()


async def test_member_list_pages_by_username_with_presence(
    client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser, bob: ApiUser
) -> None:
    for name in ("dora", "carol", "erin"):
        await api_user(client, name)
    await admin.patch("/users/@me", json={"status": "dnd"})

    everyone = await alice.get("/users")
    assert everyone.status_code == 200, everyone.text
    listed = [(u["username"], u["status"]) for u in everyone.json()]
    assert listed == [
        ("admin", "dnd"),
        ("alice", "offline"),
        ("bob", "offline"),
        ("carol", "offline"),
        ("dora", "offline"),
        ("erin", "offline"),
    ]
    assert set(everyone.json()[0]) == {
        "id",
        "username",
        "display_name",
        "avatar_url",
        "status",
        "bot",
    }

    first = (await alice.get("/users", params={"limit": 4})).json()
    rest = (await alice.get("/users", params={"limit": 4, "after": first[-1]["username"]})).json()
    assert [u["username"] for u in first + rest] == [name for name, _ in listed]
    assert len(rest) == 2


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 1001}, {"limit": "many"}, {"after": "x" * 33}]
)
async def test_member_list_refuses_bad_paging(alice: ApiUser, params: dict[str, object]) -> None:
    response = await alice.get("/users", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_member_list_needs_a_signed_in_user(client: httpx.AsyncClient) -> None:
    response = await client.get("/users")
    assert response.status_code == 401
    assert (await client.get("/voice/states")).status_code == 401


async def test_voice_states_show_calls_in_channels_the_caller_can_see(
    cache: Cache, admin: ApiUser, alice: ApiUser, bob: ApiUser
) -> None:
    lounge = (await admin.post("/channels", json={"name": "Lounge", "type": "voice"})).json()
    secret = (
        await admin.post("/channels", json={"name": "Staff", "type": "voice", "private": True})
    ).json()
    # What the voice service records when someone's call is up (tests/voice drive real calls).
    calls = ((lounge, alice, True), (lounge, bob, False), (secret, admin, False))
    for channel, user, muted in calls:
        await cache.hset(
            keys.voice_channel(UUID(channel["id"])),
            user.id,
            json.dumps({"muted": muted, "instance": "test"}),
        )

    seen_by_bob = (await bob.get("/voice/states")).json()
    seen_by_admin = (await admin.get("/voice/states")).json()

    lounge_states = [
        {"channel_id": lounge["id"], "user_id": alice.id, "muted": True},
        {"channel_id": lounge["id"], "user_id": bob.id, "muted": False},
    ]
    assert sorted(seen_by_bob, key=lambda s: s["user_id"]) == sorted(
        lounge_states, key=lambda s: s["user_id"]
    )
    assert {"channel_id": secret["id"], "user_id": admin.id, "muted": False} in seen_by_admin
    assert len(seen_by_admin) == 3
