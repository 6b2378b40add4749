"""`voicechat admin users list|show|disable|enable|promote|demote` (SPEC §3).

The same functions as `GET/PATCH /admin/users` (auth/administration.py), run on the database
and Valkey directly: disabling ends the account's sessions and sockets on the running server
at once. Accounts are named by username or id.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any
from uuid import UUID

import click

from voicechat.admin.context import AdminContext, emit, emit_record, fail, json_option, run
from voicechat.auth.administration import Actor, update_user
from voicechat.db.repositories.admin_users import AdminUserRepository, AdminUserView

_COLUMNS = [
    ("username", "USERNAME"),
    ("display_name", "DISPLAY NAME"),
    ("email", "EMAIL"),
    ("kind", "KIND"),
    ("administrator", "ADMIN"),
    ("disabled", "DISABLED"),
    ("created_at", "CREATED"),
    ("id", "ID"),
]


def _row(user: AdminUserView) -> dict[str, Any]:
    row = asdict(user)
    row["bot"] = user.bot
    row["kind"] = "bot" if user.bot else user.auth_method
    return row


async def _find(context: AdminContext, who: str) -> AdminUserView:
    repo = AdminUserRepository(context.conn)
    try:
        found = await repo.get(UUID(who))
    except ValueError:
        found = await repo.find(who.strip().lower())
    if found is None:
        fail(f"no such user: {who}")
    return found


@click.group()
def users() -> None:
    """Accounts: list, show, disable, enable, promote, demote."""


@users.command("list")
@click.option("--query", "-q", help="Part of a username, display name or email.")
@click.option("--after", default="", help="Start after this username (paging).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10000))
@json_option
def users_list(query: str | None, after: str, limit: int, as_json: bool) -> None:
    """List accounts by username."""

    async def work(context: AdminContext) -> list[AdminUserView]:
        return await AdminUserRepository(context.conn).page(q=query, after=after, limit=limit)

    emit([_row(u) for u in run(work)], _COLUMNS, as_json=as_json, empty="no accounts")


@users.command("show")
@click.argument("who")
@json_option
def users_show(who: str, as_json: bool) -> None:
    """Show one account (WHO: username or id)."""

    async def work(context: AdminContext) -> AdminUserView:
        return await _find(context, who)

    emit_record(_row(run(work)), as_json=as_json)


def _change(
    who: str, as_json: bool, *, disabled: bool | None = None, administrator: bool | None = None
) -> None:
    async def work(context: AdminContext) -> AdminUserView:
        user = await _find(context, who)
        assert context.cache is not None
        return await update_user(
            context.conn,
            context.cache,
            user.id,
            actor=Actor(None, via="cli"),
            disabled=disabled,
            administrator=administrator,
        )

    emit_record(_row(run(work, need_valkey=True)), as_json=as_json)


@users.command("disable")
@click.argument("who")
@json_option
def users_disable(who: str, as_json: bool) -> None:
    """Disable an account: its sessions, sockets and bot tokens end at once, login refused."""
    _change(who, as_json, disabled=True)


@users.command("enable")
@click.argument("who")
@json_option
def users_enable(who: str, as_json: bool) -> None:
    """Enable a disabled account again."""
    _change(who, as_json, disabled=False)


@users.command("promote")
@click.argument("who")
@json_option
def users_promote(who: str, as_json: bool) -> None:
    """Make an account an administrator (the `administrator` role)."""
    _change(who, as_json, administrator=True)


@users.command("demote")
@click.argument("who")
@json_option
def users_demote(who: str, as_json: bool) -> None:
    """Take away every role granting `administrator` (never from the last administrator)."""
    _change(who, as_json, administrator=False)
