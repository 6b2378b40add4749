"""The audit log: who did what security-relevant thing, from where. Never a secret."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
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

# GET /audit-log: newest first, keyset-paged on the id, each filter optional. The actor's
# profile columns come along (NULL for the system, an anonymous caller, or a purged account).
SELECT_PAGE = """
SELECT a.id, a.created_at, a.event, a.user_id, host(a.ip_address) AS ip_address, a.details,
       a.target_id, a.reason,
       u.username AS actor_username, u.display_name AS actor_display_name,
       u.avatar_url AS actor_avatar_url, u.status AS actor_status
FROM audit_log a LEFT JOIN users u ON u.id = a.user_id
WHERE ($1::bigint IS NULL OR a.id < $1)
  AND ($2::text IS NULL OR a.event = $2)
  AND ($3::uuid IS NULL OR a.user_id = $3)
  AND ($4::uuid IS NULL OR a.target_id = $4)
ORDER BY a.id DESC
LIMIT $5
"""
# One batch of the retention purge; rerunning it deletes nothing more than is due.
PURGE_BEFORE = """
DELETE FROM audit_log WHERE id IN (
    SELECT id FROM audit_log WHERE created_at < $1 ORDER BY created_at LIMIT $2
)
"""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit log as GET /audit-log and `voicechat admin audit` show it."""

    id: int
    created_at: datetime
    event: str
    user_id: UUID | None
    ip_address: str | None
    details: dict[str, Any]
    target_id: UUID | None
    reason: str | None
    actor_username: str | None
    actor_display_name: str | None
    actor_avatar_url: str | None
    actor_status: str | None


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

    async def page(
        self,
        *,
        before: int | None = None,
        limit: int = 50,
        event: str | None = None,
        actor_id: UUID | None = None,
        target_id: UUID | None = None,
    ) -> list[AuditEntry]:
        """Entries newest first, older than entry `before`, matching every filter given."""
        rows = await self._conn.fetch(SELECT_PAGE, before, event, actor_id, target_id, limit)
        return [AuditEntry(**dict(row.items())) for row in rows]

    async def purge(self, older_than: datetime, *, batch: int = 5000) -> int:
        """Delete up to `batch` entries created before `older_than`; returns how many."""
        status = await self._conn.execute(PURGE_BEFORE, older_than, batch)
        return int(status.split()[-1])
