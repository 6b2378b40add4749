"""What `voicechat backup` asks the database: a snapshot to dump from, the stored objects it
names, and the schema swap that makes a restore all-or-nothing."""

from __future__ import annotations

from voicechat.db.pool import Connection

#: Where the schema being replaced waits while pg_restore fills a fresh `public`.
PREVIOUS_SCHEMA = "voicechat_before_restore"


class BackupQueries:
    """The backup's SQL, on one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def export_snapshot(self) -> str:
        """Export the current transaction's snapshot for `pg_dump --snapshot` (call inside a
        REPEATABLE READ transaction, kept open until pg_dump has started)."""
        snapshot: str = await self._conn.fetchval("SELECT pg_export_snapshot()")
        return snapshot

    async def stored_object_keys(self) -> list[str]:
        """The backend key of every file row, in key order."""
        rows = await self._conn.fetch("SELECT s3_key FROM files ORDER BY s3_key")
        return [row["s3_key"] for row in rows]

    async def server_version_num(self) -> int:
        """`server_version_num`, e.g. 180006 for 18.6."""
        return int(await self._conn.fetchval("SHOW server_version_num"))

    async def other_sessions(self) -> int:
        """Other client sessions on this database (a running server holds some)."""
        count: int = await self._conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )
        return count

    async def has_previous_schema(self) -> bool:
        """Whether a schema set aside by an interrupted restore is still there."""
        found: bool = await self._conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", PREVIOUS_SCHEMA
        )
        return found

    async def set_aside_public(self) -> None:
        """Rename `public` away and create an empty one for pg_restore."""
        async with self._conn.transaction():
            await self._conn.execute(f"ALTER SCHEMA public RENAME TO {PREVIOUS_SCHEMA}")
            await self._conn.execute("CREATE SCHEMA public")

    async def drop_previous(self) -> None:
        """The restore succeeded: drop what it replaced."""
        await self._conn.execute(f"DROP SCHEMA {PREVIOUS_SCHEMA} CASCADE")

    async def put_back_previous(self) -> None:
        """The restore failed: drop the half-filled `public` and bring the old one back."""
        async with self._conn.transaction():
            await self._conn.execute("DROP SCHEMA public CASCADE")
            await self._conn.execute(f"ALTER SCHEMA {PREVIOUS_SCHEMA} RENAME TO public")
