"""Channels: create, list in sidebar order, edit, delete; DMs; roles."""

from __future__ import annotations

import pytest

from tests.utils.auth import ApiUser


async def test_categories_and_positions(admin: ApiUser, alice: ApiUser) -> None:
    games = await admin.channel(name="Games", type="category", position=1)
    chat = await admin.channel(name="Chat", type="category", position=0)
    await admin.channel(name="general", category_id=chat["id"], position=0)
    await admin.channel(name="lfg", category_id=games["id"], position=1)
    voice = await admin.channel(
        name="Lounge", type="voice", category_id=games["id"], position=0, user_limit=10
    )
    assert voice["user_limit"] == 10
    listed = (await alice.get("/channels")).json()
    by_name = {c["name"]: c for c in listed}
    assert set(by_name) == {"Games", "Chat", "general", "lfg", "Lounge"}
    assert by_name["lfg"]["category_id"] == games["id"]
    positions = [(c["position"], c["name"]) for c in listed]
    assert positions == sorted(positions, key=lambda p: p[0])


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "type": "text"},
        {"name": "   ", "type": "text"},
        {"name": "x" * 101, "type": "text"},
        {"name": "x", "type": "dm"},
        {"name": "x", "type": "text", "user_limit": 5},
        {"name": "x", "type": "voice", "user_limit": 500},
        {"name": "x", "type": "voice", "encrypted": True},
        {"name": "x", "type": "category", "topic": "no"},
        {"name": "x", "type": "text", "surprise": True},
    ],
)
async def test_bad_channel_bodies(admin: ApiUser, body: dict) -> None:  # type: ignore[type-arg]
    response = await admin.post("/channels", json=body)
    assert response.status_code == 422, response.text


async def test_category_must_be_a_category(admin: ApiUser) -> None:
    text = await admin.channel(name="plain")
    response = await admin.post(
        "/channels", json={"name": "x", "type": "text", "category_id": text["id"]}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_category"


async def test_edit_and_delete(admin: ApiUser, alice: ApiUser) -> None:
    channel = await admin.channel(name="old", topic="t")
    await alice.send(channel["id"], "bye")
    edited = await admin.patch(f"/channels/{channel['id']}", json={"name": "new", "topic": None})
    assert edited.status_code == 200
    assert edited.json()["name"] == "new"
    assert edited.json()["topic"] is None
    assert (await admin.delete(f"/channels/{channel['id']}")).status_code == 204
    assert (await alice.get(f"/channels/{channel['id']}")).status_code == 404


async def test_encrypted_channels_take_only_ciphertext(admin: ApiUser, alice: ApiUser) -> None:
    channel = await admin.channel(name="vault", encrypted=True)
    plain = await alice.post(f"/channels/{channel['id']}/messages", json={"content": "secret"})
    assert plain.status_code == 400
    assert plain.json()["error"]["code"] == "encryption_required"
    ciphertext = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": "AwgAEn...opaque",
        "sender_key": "curve25519:abc",
        "session_id": "session-1",
        "device_id": "DEVICE",
    }
    sent = await alice.post(f"/channels/{channel['id']}/messages", json=ciphertext)
    assert sent.status_code == 201, sent.text
    assert sent.json()["content"] is None
    assert sent.json()["encrypted"] == ciphertext
    plain_channel = await admin.channel(name="plain")
    refused = await alice.post(f"/channels/{plain_channel['id']}/messages", json=ciphertext)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "not_encrypted"


async def test_direct_messages(alice: ApiUser, bob: ApiUser, admin: ApiUser) -> None:
    created = await alice.post("/dms", json={"user_ids": [bob.id]})
    assert created.status_code == 201
    dm = created.json()
    assert dm["type"] == "dm"
    assert dm["encrypted"] is True
    assert dm["private"] is True
    assert {m["username"] for m in dm["members"]} == {"alice", "bob"}
    again = await bob.post("/dms", json={"user_ids": [alice.id]})
    assert again.status_code == 200
    assert again.json()["id"] == dm["id"]
    assert dm["id"] in [c["id"] for c in (await bob.get("/channels")).json()]
    # Not even the administrator reads other people's DMs.
    assert (await admin.get(f"/channels/{dm['id']}/messages")).status_code == 404
    assert dm["id"] not in [c["id"] for c in (await admin.get("/channels")).json()]
    plain = await alice.post(f"/channels/{dm['id']}/messages", json={"content": "hi"})
    assert plain.json()["error"]["code"] == "encryption_required"


async def test_group_dms(client, alice: ApiUser, bob: ApiUser) -> None:  # type: ignore[no-untyped-def]
    from tests.utils.auth import api_user

    others = [await api_user(client, f"friend{i}") for i in range(9)]
    too_many = await alice.post("/dms", json={"user_ids": [u.id for u in others] + [bob.id]})
    assert too_many.status_code == 422
    group = await alice.post("/dms", json={"user_ids": [u.id for u in others[:3]]})
    assert group.status_code == 201
    assert len(group.json()["members"]) == 4
    unknown = await alice.post("/dms", json={"user_ids": ["00000000-0000-7000-8000-000000000000"]})
    assert unknown.status_code == 404
    alone = await alice.post("/dms", json={"user_ids": [alice.id]})
    assert alone.status_code == 400


async def test_roles_crud_and_assignment(admin: ApiUser, alice: ApiUser, bob: ApiUser) -> None:
    created = await admin.post(
        "/roles", json={"name": "Moderators", "color": 0x3498DB, "permissions": ["manage_messages"]}
    )
    assert created.status_code == 201, created.text
    role = created.json()
    channel = await admin.channel(name="general")
    message = await bob.send(channel["id"], "spam")
    assert (await alice.delete(f"/messages/{message['id']}")).status_code == 403
    assert (await admin.put(f"/users/{alice.id}/roles/{role['id']}")).status_code == 204
    assert (await alice.delete(f"/messages/{message['id']}")).status_code == 204
    assert (await admin.delete(f"/users/{alice.id}/roles/{role['id']}")).status_code == 204
    message = await bob.send(channel["id"], "more spam")
    assert (await alice.delete(f"/messages/{message['id']}")).status_code == 403
    bad = await admin.post("/roles", json={"name": "x", "permissions": ["fly"]})
    assert bad.status_code == 422
    dup = await admin.post("/roles", json={"name": "moderators"})
    assert dup.status_code == 409
    assert (await admin.delete(f"/roles/{role['id']}")).status_code == 204
    everyone = next(r for r in (await admin.get("/roles")).json() if r["is_default"])
    assert (await admin.delete(f"/roles/{everyone['id']}")).status_code == 400


async def test_no_privilege_escalation(admin: ApiUser, alice: ApiUser) -> None:
    managers = (
        await admin.post("/roles", json={"name": "Managers", "permissions": ["manage_roles"]})
    ).json()
    await admin.put(f"/users/{alice.id}/roles/{managers['id']}")
    escalate = await alice.post("/roles", json={"name": "Gods", "permissions": ["administrator"]})
    assert escalate.status_code == 403
    assert escalate.json()["error"]["code"] == "permission_escalation"
    admin_role = next(r for r in (await alice.get("/roles")).json() if r["name"] == "administrator")
    grab = await alice.put(f"/users/{alice.id}/roles/{admin_role['id']}")
    assert grab.status_code == 403
