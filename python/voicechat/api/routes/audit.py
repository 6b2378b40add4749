"""`/audit-log`: who did what, for those holding `view_audit_log`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel

from voicechat.api.deps import CurrentUser, Db
from voicechat.api.openapi import errors
from voicechat.chat.permissions import Permission, require_global
from voicechat.db.repositories.audit import AuditEntry, AuditLog

router = APIRouter(tags=["audit"])


class AuditActor(BaseModel):
    id: UUID
    username: str
    display_name: str | None
    avatar_url: str | None


class AuditEntryOut(BaseModel):
    id: int
    action: str
    actor: AuditActor | None
    target_id: UUID | None
    reason: str | None
    ip_address: str | None
    created_at: datetime
    details: dict[str, Any]

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        """The wire shape of one entry."""
        actor = None
        if entry.user_id is not None and entry.actor_username is not None:
            actor = AuditActor(
                id=entry.user_id,
                username=entry.actor_username,
                display_name=entry.actor_display_name,
                avatar_url=entry.actor_avatar_url,
            )
        return cls(
            id=entry.id,
            action=entry.event,
            actor=actor,
            target_id=entry.target_id,
            reason=entry.reason,
            ip_address=entry.ip_address,
            created_at=entry.created_at,
            details=entry.details,
        )


@router.get("/audit-log", response_model=list[AuditEntryOut], responses=errors(403))
async def audit_log(
    caller: CurrentUser,
    db: Db,
    before: Annotated[int | None, Query(ge=1, description="An entry id: older ones only.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_.:-]+$")] = None,
    actor_id: UUID | None = None,
    target_id: UUID | None = None,
) -> list[AuditEntryOut]:
    """Audit entries newest first (`view_audit_log`); page with `before` = the last id seen."""
    await require_global(db, caller.user_id, Permission.VIEW_AUDIT_LOG)
    entries = await AuditLog(db).page(
        before=before, limit=limit, event=action, actor_id=actor_id, target_id=target_id
    )
    return [AuditEntryOut.of(e) for e in entries]
