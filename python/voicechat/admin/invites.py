"""`voicechat admin invites create|list|revoke` (SPEC §3): invites made by the operator.

An operator's invite has no creator (`created_by` NULL); permissions and the role hierarchy
are not checked, as the operator owns the server. The same functions as `/invites`
(auth/invites.py), so the audit log records `invite.create` and `invite.revoke` alike.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any
from uuid import UUID

import click

from voicechat.admin.context import AdminContext, emit, emit_record, json_option, run
from voicechat.auth import invites as invite_rules
from voicechat.db.repositories.invites import Invite, InviteRepository

_COLUMNS = [
    ("code", "CODE"),
    ("creator_username", "CREATED BY"),
    ("uses", "USES"),
    ("max_uses", "MAX"),
    ("expires_at", "EXPIRES"),
    ("valid", "VALID"),
    ("role_ids", "ROLES"),
    ("created_at", "CREATED"),
]


def _row(invite: Invite) -> dict[str, Any]:
    row = asdict(invite)
    row["valid"] = invite.usable
    return row


@click.group()
def invites() -> None:
    """Invites to register with: create, list, revoke."""


@invites.command("create")
@click.option("--max-uses", type=click.IntRange(1, 100_000), help="Uses before it stops working.")
@click.option(
    "--expires-in",
    type=click.IntRange(60, 365 * 24 * 3600),
    help="Seconds until it stops working.",
)
@click.option("--role", "roles", multiple=True, type=click.UUID, help="A role id given on join.")
@json_option
def invites_create(
    max_uses: int | None, expires_in: int | None, roles: tuple[UUID, ...], as_json: bool
) -> None:
    """Make an invite and print its code."""

    async def work(context: AdminContext) -> Invite:
        return await invite_rules.create_invite(
            context.conn,
            created_by=None,
            max_uses=max_uses,
            expires_in=expires_in,
            role_ids=list(roles),
        )

    emit_record(_row(run(work)), as_json=as_json)


@invites.command("list")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10000))
@json_option
def invites_list(limit: int, as_json: bool) -> None:
    """Every invite, newest first."""

    async def work(context: AdminContext) -> list[Invite]:
        return await InviteRepository(context.conn).listing(created_by=None, limit=limit)

    emit([_row(i) for i in run(work)], _COLUMNS, as_json=as_json, empty="no invites")


@invites.command("revoke")
@click.argument("code")
@json_option
def invites_revoke(code: str, as_json: bool) -> None:
    """Revoke an invite: it stops working at once."""

    async def work(context: AdminContext) -> Invite:
        return await invite_rules.revoke_invite(context.conn, code, actor_id=None)

    emit_record({**_row(run(work)), "revoked": True}, as_json=as_json)
