"""`voicechat admin audit [--action --actor --target --limit --json]`: the audit log, newest
first, as `GET /audit-log` shows it (SPEC §3)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any
from uuid import UUID

import click

from voicechat.admin.context import AdminContext, emit, fail, json_option, run
from voicechat.db.repositories.admin_users import AdminUserRepository
from voicechat.db.repositories.audit import AuditEntry, AuditLog

_COLUMNS = [
    ("id", "ID"),
    ("created_at", "TIME"),
    ("action", "ACTION"),
    ("actor", "ACTOR"),
    ("target_id", "TARGET"),
    ("ip_address", "IP"),
    ("reason", "REASON"),
]


async def _user_id(context: AdminContext, who: str) -> UUID:
    try:
        return UUID(who)
    except ValueError:
        found = await AdminUserRepository(context.conn).find(who.strip().lower())
    if found is None:
        fail(f"no such user: {who}")
    return found.id


def _row(entry: AuditEntry) -> dict[str, Any]:
    row = asdict(entry)
    row["action"] = row.pop("event")
    row["actor"] = entry.actor_username
    return row


@click.command("audit")
@click.option("--action", help="Only this action (invite.use, member.ban, ...).")
@click.option("--actor", help="Only what this user (username or id) did.")
@click.option("--target", help="Only what was done to this user or object (username or id).")
@click.option("--before", type=click.IntRange(1), help="Only entries older than this id.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@json_option
def audit(
    action: str | None,
    actor: str | None,
    target: str | None,
    before: int | None,
    limit: int,
    as_json: bool,
) -> None:
    """The audit log, newest first."""

    async def work(context: AdminContext) -> list[AuditEntry]:
        actor_id = await _user_id(context, actor) if actor else None
        target_id = await _user_id(context, target) if target else None
        return await AuditLog(context.conn).page(
            before=before, limit=limit, event=action, actor_id=actor_id, target_id=target_id
        )

    emit([_row(e) for e in run(work)], _COLUMNS, as_json=as_json, empty="no entries")
