"""Access control: a non-member of a private channel gets 403/404 everywhere, never the data."""

from __future__ import annotations

import pytest

from tests.utils.auth import ApiUser


@pytest.fixture
async def secret(admin: ApiUser, alice: ApiUser) -> dict[str, str]:
    channel = await admin.channel(name="staff", private=True)
    assert (await admin.put(f"/channels/{channel['id']}/members/{alice.id}")).status_code == 204
    message = await alice.send(channel["id"], "the plans")
    return {"channel": channel["id"], "message": message["id"]}


async def test_members_see_a_private_channel(alice: ApiUser, secret: dict[str, str]) -> None:
    listed = [c["id"] for c in (await alice.get("/channels")).json()]
    assert secret["channel"] in listed
    assert (await alice.get(f"/channels/{secret['channel']}")).status_code == 200
    members = (await alice.get(f"/channels/{secret['channel']}/members")).json()
    assert {m["username"] for m in members} == {"admin", "alice"}


async def test_non_members_get_nothing(bob: ApiUser, secret: dict[str, str]) -> None:
    channel, message = secret["channel"], secret["message"]
    assert channel not in [c["id"] for c in (await bob.get("/channels")).json()]
    responses = {
        "details": await bob.get(f"/channels/{channel}"),
        "members": await bob.get(f"/channels/{channel}/members"),
        "list": await bob.get(f"/channels/{channel}/messages"),
        "send": await bob.post(f"/channels/{channel}/messages", json={"content": "let me in"}),
        "edit": await bob.patch(f"/messages/{message}", json={"content": "x"}),
        "delete": await bob.delete(f"/messages/{message}"),
        "rename": await bob.patch(f"/channels/{channel}", json={"name": "mine"}),
        "remove": await bob.delete(f"/channels/{channel}"),
        "join": await bob.put(f"/channels/{channel}/members/{bob.id}"),
    }
    for name, response in responses.items():
        assert response.status_code in (403, 404), name
        assert "the plans" not in response.text, name
        assert "error" in response.json(), name


async def test_hidden_and_missing_look_the_same(bob: ApiUser, secret: dict[str, str]) -> None:
    hidden = await bob.get(f"/channels/{secret['channel']}/messages")
    missing = await bob.get("/channels/00000000-0000-7000-8000-000000000000/messages")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["code"] == missing.json()["error"]["code"]
    hidden_message = await bob.delete(f"/messages/{secret['message']}")
    missing_message = await bob.delete("/messages/00000000-0000-7000-8000-000000000000")
    assert hidden_message.json()["error"]["code"] == missing_message.json()["error"]["code"]


async def test_removed_members_lose_access(
    admin: ApiUser, alice: ApiUser, secret: dict[str, str]
) -> None:
    assert (
        await admin.delete(f"/channels/{secret['channel']}/members/{alice.id}")
    ).status_code == 204
    assert (await alice.get(f"/channels/{secret['channel']}/messages")).status_code == 404


async def test_members_may_leave(alice: ApiUser, secret: dict[str, str]) -> None:
    assert (
        await alice.delete(f"/channels/{secret['channel']}/members/{alice.id}")
    ).status_code == 204
    assert (await alice.get(f"/channels/{secret['channel']}")).status_code == 404


async def test_ordinary_members_cannot_manage(alice: ApiUser, bob: ApiUser, admin: ApiUser) -> None:
    public = await admin.channel(name="lobby")
    assert (await alice.post("/channels", json={"name": "mine", "type": "text"})).status_code == 403
    assert (await alice.patch(f"/channels/{public['id']}", json={"name": "x"})).status_code == 403
    assert (await alice.delete(f"/channels/{public['id']}")).status_code == 403
    message = await bob.send(public["id"], "hi")
    assert (await alice.delete(f"/messages/{message['id']}")).status_code == 403


async def test_a_role_without_view_channel_hides_public_channels(
    admin: ApiUser, alice: ApiUser
) -> None:
    public = await admin.channel(name="town-square")
    roles = (await admin.get("/roles")).json()
    everyone = next(r for r in roles if r["is_default"])
    revoked = await admin.patch(
        f"/roles/{everyone['id']}",
        json={"permissions": ["send_messages", "upload_files", "voice_connect", "voice_speak"]},
    )
    assert revoked.status_code == 200, revoked.text
    assert public["id"] not in [c["id"] for c in (await alice.get("/channels")).json()]
    assert (await alice.get(f"/channels/{public['id']}/messages")).status_code == 404
    # The administrator still sees everything.
    assert (await admin.get(f"/channels/{public['id']}/messages")).status_code == 200
