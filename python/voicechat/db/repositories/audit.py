"""The audit log: who did what security-relevant thing, from where. Never a secret."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from voicechat.db.pool import Connection

INSERT_AUDIT = """
INSERT INTO audit_log (event, user_id, ip_address, user_agent, details, target_id, reason)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
SELECT_RECENT = """
SELECT id, created_at, event, user_id, host(ip_address) AS ip_address, user_agent, details,
       target_id, reason
FROM audit_log
WHERE ($1::uuid IS NULL OR user_id = $1)
ORDER BY id DESC
LIMIT $2
"""


class AuditLog:
    """Append-only writes and recent reads of `audit_log`."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def record(
        self,
        event: str,
        *,
        user_id: UUID | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        details: Mapping[str, Any] | None = None,
        target_id: UUID | None = None,
        reason: str | None = None,
    ) -> None:
        """Append one event. `details` must not hold passwords, codes or tokens.

        Args:
            event: what happened, dotted (`auth.login`, `member.ban`, ...).
            user_id: who did it (the actor); None for the system or an anonymous caller.
            ip_address: the actor's client address (behind trusted proxies: the real one).
            user_agent: the actor's user agent.
            details: more about the event, never a secret.
            target_id: whom it was done to (a user, or the id of the object acted on).
            reason: the reason the actor gave, as typed.
        """
        await self._conn.execute(
            INSERT_AUDIT,
            event,
            user_id,
            ip_address,
            user_agent,
            dict(details or {}),
            target_id,
            reason,
        )

    async def recent(self, *, user_id: UUID | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest events, optionally of one user."""
        rows = await self._conn.fetch(SELECT_RECENT, user_id, limit)
        return [dict(row.items()) for row in rows]
