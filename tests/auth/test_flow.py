"""The life of a session over real HTTP, PostgreSQL and Valkey: register to logout."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from tests.utils.auth import DEFAULT_PASSWORD, bearer, register


async def test_register_login_refresh_reuse_logout(client: httpx.AsyncClient) -> None:
    registered = await register(client, "Alice", display_name="Alice A.")
    assert registered["token_type"] == "Bearer"
    assert registered["expires_in"] == 900
    assert registered["user"]["username"] == "alice"  # folded to lower case

    login = await client.post(
        "/auth/login", json={"username": "ALICE", "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 200, login.text
    tokens = login.json()
    me = await client.get("/users/@me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json()["display_name"] == "Alice A."

    refreshed = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    assert (await client.get("/users/@me", headers=bearer(new["access_token"]))).status_code == 200

    # The rotated token is refused...
    old = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert old.status_code == 401
    assert old.json()["error"]["code"] == "refresh_token_rotated"
    # ...and presenting it again is reuse: the whole session ends, new tokens included.
    again = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "refresh_token_reused"
    dead_access = await client.get("/users/@me", headers=bearer(new["access_token"]))
    assert dead_access.status_code == 401
    assert dead_access.json()["error"]["code"] == "session_revoked"
    dead_refresh = await client.post("/auth/refresh", json={"refresh_token": new["refresh_token"]})
    assert dead_refresh.status_code == 401

    # The registration session is separate and still alive; logging out ends it at once.
    access = registered["access_token"]
    assert (await client.get("/users/@me", headers=bearer(access))).status_code == 200
    logout = await client.post(
        "/auth/logout", headers=bearer(access), json={"refresh_token": registered["refresh_token"]}
    )
    assert logout.status_code == 204
    refused = await client.get("/users/@me", headers=bearer(access))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "session_revoked"
    gone = await client.post("/auth/refresh", json={"refresh_token": registered["refresh_token"]})
    assert gone.status_code == 401


async def test_reuse_after_the_grace_window_revokes_at_once(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time as real_time

    tokens = await register(client, "bob")
    first = tokens["refresh_token"]
    rotated = (await client.post("/auth/refresh", json={"refresh_token": first})).json()
    later = real_time.time() + 60
    monkeypatch.setattr("voicechat.auth.sessions.time.time", lambda: later)
    replay = await client.post("/auth/refresh", json={"refresh_token": first})
    assert replay.json()["error"]["code"] == "refresh_token_reused"
    assert (
        await client.get("/users/@me", headers=bearer(rotated["access_token"]))
    ).status_code == 401


async def test_wrong_password_and_unknown_user_look_the_same(client: httpx.AsyncClient) -> None:
    await register(client, "carol")
    wrong = await client.post(
        "/auth/login", json={"username": "carol", "password": "not it at all"}
    )
    unknown = await client.post("/auth/login", json={"username": "nobody", "password": "whatever1"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"]["code"] == unknown.json()["error"]["code"] == "invalid_credentials"
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]


async def test_first_user_is_the_administrator(client: httpx.AsyncClient) -> None:
    first = await register(client, "founder")
    second = await register(client, "member")
    assert first["user"]["roles"] == ["administrator"]
    assert second["user"]["roles"] == []


async def test_a_taken_username_is_409(client: httpx.AsyncClient) -> None:
    await register(client, "dave")
    response = await client.post(
        "/auth/register", json={"username": "DAVE", "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "username_taken"


async def test_sessions_are_listed_and_revocable(client: httpx.AsyncClient) -> None:
    first = await register(client, "erin")
    second = (
        await client.post(
            "/auth/login",
            json={"username": "erin", "password": DEFAULT_PASSWORD},
            headers={"user-agent": "voicechat-desktop/1.0"},
        )
    ).json()
    listed = await client.get("/auth/sessions", headers=bearer(first["access_token"]))
    assert listed.status_code == 200
    sessions = listed.json()
    assert len(sessions) == 2
    assert [s["current"] for s in sessions].count(True) == 1
    other = next(s for s in sessions if not s["current"])
    assert other["user_agent"] == "voicechat-desktop/1.0"
    assert other["ip_address"] == "127.0.0.1"

    revoked = await client.delete(
        f"/auth/sessions/{other['id']}", headers=bearer(first["access_token"])
    )
    assert revoked.status_code == 204
    assert (
        await client.get("/users/@me", headers=bearer(second["access_token"]))
    ).status_code == 401
    left = (await client.get("/auth/sessions", headers=bearer(first["access_token"]))).json()
    assert [s["id"] for s in left] != [other["id"]]
    assert len(left) == 1


async def test_nobody_revokes_someone_elses_session(client: httpx.AsyncClient) -> None:
    victim = await register(client, "frank")
    attacker = await register(client, "grace")
    [session] = (await client.get("/auth/sessions", headers=bearer(victim["access_token"]))).json()
    response = await client.delete(
        f"/auth/sessions/{session['id']}", headers=bearer(attacker["access_token"])
    )
    assert response.status_code == 404
    assert (
        await client.get("/users/@me", headers=bearer(victim["access_token"]))
    ).status_code == 200


async def test_profiles(client: httpx.AsyncClient) -> None:
    heidi = await register(client, "heidi", email="heidi@example.org")
    ivan = await register(client, "ivan")
    patched = await client.patch(
        "/users/@me",
        headers=bearer(heidi["access_token"]),
        json={"display_name": "Heidi", "status": "dnd"},
    )
    assert patched.status_code == 200
    assert patched.json()["status"] == "dnd"
    public = await client.get(f"/users/{heidi['user']['id']}", headers=bearer(ivan["access_token"]))
    assert public.status_code == 200
    assert public.json() == {
        "id": heidi["user"]["id"],
        "username": "heidi",
        "display_name": "Heidi",
        "avatar_url": None,
        "status": "dnd",
        "bot": False,
    }
    assert "email" not in public.json()
    bad_status = await client.patch(
        "/users/@me", headers=bearer(heidi["access_token"]), json={"status": "asleep"}
    )
    assert bad_status.status_code == 422
    anonymous = await client.get(f"/users/{heidi['user']['id']}")
    assert anonymous.status_code == 401


async def test_audit_log_records_events_without_secrets(
    client: httpx.AsyncClient, database_url: str
) -> None:
    tokens = await register(client, "judy")
    await client.post("/auth/login", json={"username": "judy", "password": "wrong password"})
    await client.post("/auth/logout", headers=bearer(tokens["access_token"]))
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT event, details::text AS details FROM audit_log ORDER BY id")
    finally:
        await conn.close()
    events = [row["event"] for row in rows]
    assert events == ["user.registered", "login.succeeded", "login.failed", "logout"]
    dumped = " ".join(row["details"] for row in rows)
    for secret in (
        DEFAULT_PASSWORD,
        "wrong password",
        tokens["refresh_token"],
        tokens["access_token"],
    ):
        assert secret not in dumped


async def test_password_hash_is_argon2id_with_the_required_cost(
    client: httpx.AsyncClient, database_url: str
) -> None:
    await register(client, "kim")
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval("SELECT password_hash FROM users WHERE username = 'kim'")
    finally:
        await conn.close()
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert DEFAULT_PASSWORD not in stored


async def test_login_rehashes_a_weaker_hash(client: httpx.AsyncClient, database_url: str) -> None:
    from argon2 import PasswordHasher

    await register(client, "leo")
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(DEFAULT_PASSWORD)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE users SET password_hash = $1 WHERE username = 'leo'", weak)
        login = await client.post(
            "/auth/login", json={"username": "leo", "password": DEFAULT_PASSWORD}
        )
        assert login.status_code == 200
        stored = await conn.fetchval("SELECT password_hash FROM users WHERE username = 'leo'")
    finally:
        await conn.close()
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
