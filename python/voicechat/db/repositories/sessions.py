"""The durable record of login sessions (the live copy, checked per request, is in Valkey)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from voicechat.db.pool import Connection

INSERT_SESSION = """
INSERT INTO sessions (id, user_id, token_hash, expires_at, ip_address, user_agent)
VALUES ($1, $2, $3, $4, $5::inet, $6)
"""
ROTATE_SESSION = """
UPDATE sessions SET token_hash = $2, expires_at = $3, last_used_at = now()
WHERE id = $1 AND revoked_at IS NULL
"""
REVOKE_SESSION = "UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"


class SessionRepository:
    """Writes of `sessions` rows, mirroring the Valkey sessions for audit and recovery."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def record(
        self,
        session_id: UUID,
        user_id: UUID,
        *,
        refresh_hash: str,
        ttl_seconds: int,
        ip: str | None,
        user_agent: str | None,
    ) -> None:
        """Insert the row of a new session."""
        await self._conn.execute(
            INSERT_SESSION,
            session_id,
            user_id,
            bytes.fromhex(refresh_hash),
            datetime.now(UTC) + timedelta(seconds=ttl_seconds),
            ip,
            user_agent,
        )

    async def rotated(self, session_id: UUID, *, refresh_hash: str, ttl_seconds: int) -> None:
        """Note the session's new refresh token (by hash) and expiry."""
        await self._conn.execute(
            ROTATE_SESSION,
            session_id,
            bytes.fromhex(refresh_hash),
            datetime.now(UTC) + timedelta(seconds=ttl_seconds),
        )

    async def revoked(self, session_id: UUID) -> None:
        """Mark the session ended."""
        await self._conn.execute(REVOKE_SESSION, session_id)
