"""GET /audit-log (view_audit_log): filters, paging, refusal; role and invite actions in it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.utils.auth import ApiUser
from voicechat.sdk.client import Client
from voicechat.sdk.errors import ApiError


async def test_filters_paging_and_refusal(
    client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser
) -> None:
    for i in range(3):
        made = await client.post("/invites", json={"max_uses": i + 1}, headers=admin.headers)
        assert made.status_code == 201
    first = await client.get(
        "/audit-log", params={"action": "invite.create", "limit": 2}, headers=admin.headers
    )
    assert first.status_code == 200
    page = first.json()
    assert [e["action"] for e in page] == ["invite.create"] * 2
    assert page[0]["id"] > page[1]["id"]
    assert page[0]["actor"]["username"] == "admin"
    assert page[0]["details"]["max_uses"] == 3
    rest = await client.get(
        "/audit-log",
        params={"action": "invite.create", "before": page[1]["id"]},
        headers=admin.headers,
    )
    assert [e["details"]["max_uses"] for e in rest.json()] == [1]
    mine = await client.get("/audit-log", params={"actor_id": str(alice.id)}, headers=admin.headers)
    assert mine.json()
    assert {e["actor"]["id"] for e in mine.json()} == {str(alice.id)}
    refused = await client.get("/audit-log", headers=alice.headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "missing_permission"
    assert (
        await client.get("/audit-log", params={"limit": 101}, headers=admin.headers)
    ).status_code == 422


async def test_sdk_invites_and_audit_against_a_live_server_in_invite_mode(
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> None:
    server = live_server_factory(
        {
            "VOICECHAT_DATABASE_URL": database_url,
            "VOICECHAT_VALKEY_URL": clean_valkey,
            "VOICECHAT_DATA_DIR": str(tmp_path / "live-data"),
            "VOICECHAT_REGISTRATION": "invite",
            "VOICECHAT_SERVER_NAME": "The Club",
        }
    )
    async with Client(server.base_url) as admin, Client(server.base_url) as guest:
        await admin.register("admin", "admin password")
        with pytest.raises(ApiError) as refused:
            await guest.register("guest", "guest password")
        assert refused.value.code == "invite_required"
        invite = await admin.create_invite(max_uses=1, expires_in=3600)
        preview = await guest.get_invite(invite["code"])
        assert preview["valid"] is True
        assert preview["server_name"] == "The Club"
        assert preview["inviter"]["username"] == "admin"
        await guest.register("guest", "guest password", invite=invite["code"])
        assert (await guest.get_invite(invite["code"]))["valid"] is False
        assert [i["uses"] for i in await admin.list_invites()] == [1]
        used = await admin.audit_log(action="invite.use")
        assert used[0]["actor"]["username"] == "guest"
        assert admin.user is not None
        assert used[0]["target_id"] == str(admin.user.id)
        await admin.revoke_invite(invite["code"])
        assert await admin.list_invites() == []


async def test_role_and_channel_actions_are_audited(
    client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser
) -> None:
    role = (await client.post("/roles", json={"name": "mods"}, headers=admin.headers)).json()
    await client.patch(f"/roles/{role['id']}", json={"color": 255}, headers=admin.headers)
    await client.put(f"/users/{alice.id}/roles/{role['id']}", headers=admin.headers)
    await client.delete(f"/users/{alice.id}/roles/{role['id']}", headers=admin.headers)
    await client.delete(f"/roles/{role['id']}", headers=admin.headers)
    channel = (
        await client.post("/channels", json={"name": "news", "type": "text"}, headers=admin.headers)
    ).json()
    await client.patch(f"/channels/{channel['id']}", json={"topic": "t"}, headers=admin.headers)
    await client.delete(f"/channels/{channel['id']}", headers=admin.headers)
    entries = (await client.get("/audit-log", headers=admin.headers)).json()
    actions = [e["action"] for e in entries if e["action"].startswith(("role.", "channel."))]
    assert actions == [
        "channel.delete",
        "channel.update",
        "channel.create",
        "role.delete",
        "role.unassign",
        "role.assign",
        "role.update",
        "role.create",
    ]
    assigned = next(e for e in entries if e["action"] == "role.assign")
    assert assigned["target_id"] == str(alice.id)
    assert assigned["details"] == {"role_id": role["id"]}
