"""Bans and timeouts through the API (docs/moderation.md), on real PostgreSQL and Valkey."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from tests.utils.auth import DEFAULT_PASSWORD, ApiUser, api_user


async def _moderator(admin: ApiUser, user: ApiUser, position: int = 10) -> None:
    role = await admin.post(
        "/roles",
        json={
            "name": f"mod-{user.username}",
            "permissions": ["ban_members", "moderate_members"],
            "position": position,
        },
    )
    assert role.status_code == 201, role.text
    assigned = await admin.put(f"/users/{user.id}/roles/{role.json()['id']}")
    assert assigned.status_code == 204, assigned.text


async def test_the_hierarchy_protects_administrators_equals_and_oneself(
    client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser, bob: ApiUser
) -> None:
    # Without the permission: 403 missing_permission.
    refused = await alice.put(f"/bans/{bob.id}", json={})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "missing_permission"
    await _moderator(admin, alice, 10)
    await _moderator(admin, bob, 10)
    for target, code in ((admin.id, "role_hierarchy"), (bob.id, "role_hierarchy")):
        answer = await alice.put(f"/bans/{target}", json={"reason": "x"})
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == code
    own = await alice.put(f"/users/{alice.id}/timeout", json={"until": _in(60)})
    assert own.json()["error"]["code"] == "cannot_moderate_self"
    # Nothing was banned.
    assert (await admin.get("/bans")).json() == []


async def test_a_ban_ends_sessions_refuses_login_and_refresh_and_deletes_recent_messages(
    client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser, database_url: str
) -> None:
    channel = await admin.channel(name="general")
    kept = await admin.send(channel["id"], "stays")
    gone = [await alice.send(channel["id"], f"spam {i}") for i in range(3)]

    banned = await admin.put(
        f"/bans/{alice.id}", json={"reason": "spam", "delete_message_seconds": 3600}
    )
    assert banned.status_code == 204, banned.text
    # Her session ended at once; her login and refresh are refused with 403 banned.
    assert (await alice.get("/users/@me")).status_code == 401
    login = await client.post(
        "/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 403
    assert login.json()["error"]["code"] == "banned"
    refresh = await client.post(
        "/auth/refresh", json={"refresh_token": alice.tokens["refresh_token"]}
    )
    assert refresh.status_code == 403
    assert refresh.json()["error"]["code"] == "banned"
    # Her messages of the last hour are gone, the others stay.
    page = (await admin.get(f"/channels/{channel['id']}/messages")).json()["messages"]
    assert [m["id"] for m in page] == [kept["id"]]
    assert not {m["id"] for m in gone} & {m["id"] for m in page}
    bans = (await admin.get("/bans")).json()
    assert [(b["user_id"], b["reason"]) for b in bans] == [(alice.id, "spam")]
    assert ("member.ban", "spam") in await _audit(database_url, alice.id)

    # Unbanned, she logs in again.
    assert (await admin.delete(f"/bans/{alice.id}")).status_code == 204
    assert (await admin.delete(f"/bans/{alice.id}")).json()["error"]["code"] == "ban_not_found"
    again = await client.post(
        "/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD}
    )
    assert again.status_code == 200, again.text


async def test_a_timed_out_user_reads_but_cannot_send_until_cleared(
    client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser, database_url: str
) -> None:
    channel = await admin.channel(name="general")
    await admin.send(channel["id"], "hello")
    for bad in (_in(-60), _in(29 * 24 * 3600)):
        refused = await admin.put(f"/users/{alice.id}/timeout", json={"until": bad})
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "invalid_timeout"
    until = _in(600)
    timed = await admin.put(f"/users/{alice.id}/timeout", json={"until": until, "reason": "calm"})
    assert timed.status_code == 200, timed.text
    profile = (await admin.get(f"/users/{alice.id}")).json()
    assert profile["communication_disabled_until"] is not None

    send = await alice.post(f"/channels/{channel['id']}/messages", json={"content": "hi"})
    assert send.status_code == 403
    error = send.json()["error"]
    assert error["code"] == "timed_out"
    assert datetime.fromisoformat(error["until"]) == datetime.fromisoformat(until)
    # Reading still works.
    assert (await alice.get(f"/channels/{channel['id']}/messages")).status_code == 200

    cleared = await admin.delete(f"/users/{alice.id}/timeout")
    assert cleared.json()["communication_disabled_until"] is None
    await alice.send(channel["id"], "back")
    audit = await _audit(database_url, alice.id)
    assert {("member.timeout", "calm"), ("member.timeout_clear", None)} <= set(audit)


async def _audit(database_url: str, target_id: str) -> list[tuple[str, str | None]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT event, reason FROM audit_log WHERE target_id = $1 ORDER BY id", target_id
        )
    finally:
        await conn.close()
    return [(row["event"], row["reason"]) for row in rows]


def _in(seconds: int) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def test_an_unknown_user_is_404(client: httpx.AsyncClient, admin: ApiUser) -> None:
    other = await api_user(client, "carol")
    missing = "00000000-0000-0000-0000-000000000001"
    answer = await admin.put(f"/bans/{missing}", json={})
    assert answer.status_code == 404
    assert (await admin.put(f"/bans/{other.id}", json={})).status_code == 204
