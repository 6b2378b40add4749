"""Repositories against the migrated schema."""

from __future__ import annotations

import asyncpg
import pytest

from voicechat.db.repositories import AuditLog, UserRepository
from voicechat.errors import Conflict, NotFound


@pytest.fixture
async def conn(database_url: str):  # type: ignore[no-untyped-def]
    connection = await asyncpg.connect(database_url)
    from voicechat.db.pool import _init_connection

    await _init_connection(connection)
    yield connection
    await connection.close()


async def test_users_are_created_and_found(conn: asyncpg.Connection) -> None:
    users = UserRepository(conn)
    created = await users.create("alice", password_hash="$argon2id$x", display_name="Alice")
    assert created.status == "offline"
    assert created.auth_method == "local"
    assert (await users.get(created.id)).username == "alice"
    assert (await users.find_by_username("alice")) == created
    assert await users.find_by_username("bob") is None
    assert await users.count() == 1


async def test_a_taken_username_is_a_conflict(conn: asyncpg.Connection) -> None:
    users = UserRepository(conn)
    await users.create("alice", password_hash="h")
    with pytest.raises(Conflict) as caught:
        await users.create("alice", password_hash="h2")
    assert caught.value.code == "username_taken"


async def test_an_unknown_user_is_not_found(conn: asyncpg.Connection) -> None:
    import uuid

    with pytest.raises(NotFound):
        await UserRepository(conn).get(uuid.uuid4())


async def test_the_schema_refuses_bad_usernames(conn: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await UserRepository(conn).create("Alice!", password_hash="h")


async def test_audit_events_are_recorded(conn: asyncpg.Connection) -> None:
    user = await UserRepository(conn).create("carol", password_hash="h")
    audit = AuditLog(conn)
    await audit.record(
        "login.succeeded",
        user_id=user.id,
        ip_address="127.0.0.1",
        user_agent="pytest",
        details={"method": "password"},
    )
    [event] = await audit.recent(user_id=user.id)
    assert event["event"] == "login.succeeded"
    assert event["ip_address"] == "127.0.0.1"
    assert event["details"] == {"method": "password"}
