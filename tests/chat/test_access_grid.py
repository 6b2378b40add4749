"""The one visibility rule (`channel_permissions`, migration 0003) over a grid.

Users (plain, with a server-wide role, administrator) by channels (public, private, DM, child of
a private category) by per-channel role (not a member, member, member with a viewing role,
member with an administrator role) by the default role (with and without `view_channel`). The
expected bits are restated here from SPEC §3, independently of the SQL, and every query that
uses the rule (one channel's access, the channel list, a channel's audience) must agree.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from uuid import UUID

import asyncpg
import pytest

from voicechat.chat.permissions import ALL_PERMISSIONS, DM_PERMISSIONS
from voicechat.db.repositories.access import (
    base_permissions,
    channel_access,
    channel_permissions,
    users_who_see,
    visible_channels,
)

EVERYONE = frozenset({"view_channel", "send_messages", "upload_files"})
EVERYONE_BLIND = frozenset({"send_messages"})
MODERATOR = frozenset({"manage_messages"})
CHANNEL_VIEWER = frozenset({"view_channel", "kick_members"})
CHANNEL_ADMIN = frozenset({"administrator"})

USERS = ("plain", "moderator", "admin")
CHANNELS = ("public", "private", "dm", "category_child")
OVERRIDES = ("none", "member", "member_viewer", "member_admin")


def expected(
    default: frozenset[str], user: str, channel: str, override: str
) -> frozenset[str] | None:
    """SPEC §3, restated: what `user` may do on `channel`, or None when it is invisible."""
    base = set(default)
    if user == "moderator":
        base |= MODERATOR
    if user == "admin":
        base |= {"administrator"}
    is_member = override != "none"
    if channel == "dm":
        return DM_PERMISSIONS if is_member else None
    if "administrator" in base:
        return ALL_PERMISSIONS
    if channel == "private" and not is_member:
        return None
    granted = (
        base
        | {
            "none": set(),
            "member": set(),
            "member_viewer": CHANNEL_VIEWER,
            "member_admin": CHANNEL_ADMIN,
        }[override]
    )
    if "administrator" in granted:
        return ALL_PERMISSIONS
    return frozenset(granted) if "view_channel" in granted else None


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def _role(conn: asyncpg.Connection, name: str, permissions: frozenset[str]) -> UUID:
    role_id: UUID = await conn.fetchval(
        "INSERT INTO roles (name, permissions) VALUES ($1, to_jsonb($2::text[])) RETURNING id",
        name,
        sorted(permissions),
    )
    return role_id


async def _user(conn: asyncpg.Connection, name: str, role_id: UUID | None) -> UUID:
    user_id: UUID = await conn.fetchval(
        "INSERT INTO users (username, display_name, password_hash) VALUES ($1, $1, 'x')"
        " RETURNING id",
        name,
    )
    if role_id is not None:
        await conn.execute(
            "INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2)", user_id, role_id
        )
    return user_id


async def _channel(
    conn: asyncpg.Connection, name: str, kind: str, *, private: bool, category: UUID | None = None
) -> UUID:
    channel_id: UUID = await conn.fetchval(
        "INSERT INTO channels (name, type, private, encrypted, category_id)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING id",
        name,
        kind,
        private,
        kind == "dm",  # DMs are always end-to-end encrypted
        category,
    )
    return channel_id


async def test_the_sql_knows_the_same_permission_names(conn: asyncpg.Connection) -> None:
    assert frozenset(await conn.fetchval("SELECT all_permissions()")) == ALL_PERMISSIONS
    assert frozenset(await conn.fetchval("SELECT dm_permissions()")) == DM_PERMISSIONS


@pytest.mark.parametrize(
    "default", [EVERYONE, EVERYONE_BLIND], ids=["default_sees", "default_blind"]
)
async def test_channel_permissions_over_the_grid(
    conn: asyncpg.Connection, default: frozenset[str]
) -> None:
    await conn.execute(
        "UPDATE roles SET permissions = to_jsonb($1::text[]) WHERE is_default", sorted(default)
    )
    moderator = await _role(conn, "moderator", MODERATOR)
    administrator = await conn.fetchval("SELECT id FROM roles WHERE name = 'administrator'")
    per_channel = {
        "none": None,
        "member": None,
        "member_viewer": await _role(conn, "channel viewer", CHANNEL_VIEWER),
        "member_admin": await _role(conn, "channel admin", CHANNEL_ADMIN),
    }
    users = {
        "plain": await _user(conn, "plain", None),
        "moderator": await _user(conn, "moderator", moderator),
        "admin": await _user(conn, "admin", administrator),
    }
    category = await _channel(conn, "closed category", "category", private=True)

    # Each channel carries one user's membership; the others see it as non-members.
    grid: list[tuple[UUID, str, str, str]] = []
    for n, (owner, kind, override) in enumerate(itertools.product(USERS, CHANNELS, OVERRIDES)):
        channel_id = await _channel(
            conn,
            f"c{n}",
            "dm" if kind == "dm" else "text",
            private=kind in ("private", "dm"),
            category=category if kind == "category_child" else None,
        )
        if override != "none":
            await conn.execute(
                "INSERT INTO channel_members (channel_id, user_id, role_id) VALUES ($1, $2, $3)",
                channel_id,
                users[owner],
                per_channel[override],
            )
        grid.append((channel_id, owner, kind, override))

    for name, user_id in users.items():
        visible: set[UUID] = set()
        for channel_id, owner, kind, override in grid:
            want = expected(default, name, kind, override if owner == name else "none")
            case = (name, owner, kind, override)
            assert await channel_permissions(conn, channel_id, user_id) == want, case
            access = await channel_access(conn, user_id, channel_id)
            assert (None if access is None else access.permissions) == want, case
            assert (access is not None and access.is_member) == (
                want is not None and owner == name and override != "none"
            ), case
            seen = await users_who_see(conn, channel_id, [user_id])
            assert seen == ({user_id} if want is not None else set()), case
            if want is not None:
                visible.add(channel_id)
        listed = {c.id for c in await visible_channels(conn, user_id)} - {category}
        assert listed == visible, name
        want_base = (
            ALL_PERMISSIONS
            if name == "admin"
            else default | (MODERATOR if name == "moderator" else frozenset())
        )
        assert await base_permissions(conn, user_id) == want_base, name
