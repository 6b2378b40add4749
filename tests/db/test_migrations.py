"""Migrations on a real PostgreSQL: from empty, twice, concurrently, and against edits."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import asyncpg
import pytest

from voicechat.db import apply_migrations, load_migrations
from voicechat.errors import MigrationError

SPEC_TABLES = {
    "users",
    "sessions",
    "devices",
    "one_time_keys",
    "channels",
    "channel_members",
    "roles",
    "user_roles",
    "messages",
    "megolm_sessions",
    "files",
    "audit_log",
    "to_device_messages",
    "mfa_backup_codes",
}


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


async def test_migrations_build_the_whole_data_model_on_an_empty_database(
    empty_database_url: str,
) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await _tables(conn) == set()
        applied = await apply_migrations(conn)
        assert [m.version for m in applied] == [m.version for m in load_migrations()]
        assert await _tables(conn) >= SPEC_TABLES
        default_role = await conn.fetchrow("SELECT name, permissions FROM roles WHERE is_default")
        assert default_role is not None
        assert set(json.loads(default_role["permissions"])) == {
            "view_channel",
            "send_messages",
            "upload_files",
            "voice_connect",
            "voice_speak",
        }
    finally:
        await conn.close()


async def test_running_migrations_twice_changes_nothing(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await apply_migrations(conn)
        before = await conn.fetch("SELECT version, applied_at FROM schema_migrations")
        assert await apply_migrations(conn) == []
        after = await conn.fetch("SELECT version, applied_at FROM schema_migrations")
        assert before == after
        assert await conn.fetchval("SELECT count(*) FROM roles") == 2
    finally:
        await conn.close()


async def test_concurrent_starts_migrate_once(empty_database_url: str) -> None:
    conns = [await asyncpg.connect(empty_database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(apply_migrations(c) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, len(load_migrations())]
    finally:
        for conn in conns:
            await conn.close()


async def test_an_edited_migration_is_refused(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await apply_migrations(conn)
        edited = [replace(m, sql=m.sql + "\n-- edited\n") for m in load_migrations()]
        with pytest.raises(MigrationError, match="edited"):
            await apply_migrations(conn, edited)
    finally:
        await conn.close()


async def test_a_database_from_a_newer_version_is_refused(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await apply_migrations(conn)
        await conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')"
        )
        with pytest.raises(MigrationError, match="newer"):
            await apply_migrations(conn)
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing_half_applied(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        broken = [*load_migrations()]
        broken.append(replace(broken[-1], version=9000, name="broken", sql="CREATE TABLE x (;"))
        with pytest.raises(asyncpg.PostgresSyntaxError):
            await apply_migrations(conn, broken)
        assert await _tables(conn) == set()
    finally:
        await conn.close()
