"""What a moderator may do to a member, and what a moderated user is told.

:func:`allowed_actions` decides which items a member's context menu shows: the signed-in
user's permissions (the union of the default role's and their roles') AND the role hierarchy
the server enforces (docs/moderation.md): nobody acts on themself, an administrator is never a
target, and someone who is not an administrator acts only on members whose highest role sits
strictly below their own (the default role counts as 0). The server checks all of it again;
the menu only leaves out what would be refused.

The texts a banned, timed-out or server-muted user sees are here too, so the window and the
tests say the same thing. Nothing here knows Kivy or the network.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from uuid import UUID

from voicechat.sdk.app.feed import NETWORK_ERRORS, ChangeFeed
from voicechat.sdk.client import Client
from voicechat.sdk.errors import ApiError
from voicechat.sdk.models import Role

log = logging.getLogger(__name__)


class ModerationAction(StrEnum):
    """An item of a member's context menu."""

    BAN = "ban"
    TIMEOUT = "timeout"
    SERVER_MUTE = "server_mute"
    SERVER_DEAFEN = "server_deafen"
    MOVE = "move"
    DISCONNECT = "disconnect"


#: The permission each action needs (SPEC §3).
REQUIRED_PERMISSION: dict[ModerationAction, str] = {
    ModerationAction.BAN: "ban_members",
    ModerationAction.TIMEOUT: "moderate_members",
    ModerationAction.SERVER_MUTE: "mute_members",
    ModerationAction.SERVER_DEAFEN: "mute_members",
    ModerationAction.MOVE: "move_members",
    ModerationAction.DISCONNECT: "move_members",
}
#: Actions that only make sense on someone in a voice channel.
VOICE_ACTIONS = frozenset(
    {
        ModerationAction.SERVER_MUTE,
        ModerationAction.SERVER_DEAFEN,
        ModerationAction.MOVE,
        ModerationAction.DISCONNECT,
    }
)
#: The timeout durations offered, as (label, seconds).
TIMEOUT_CHOICES: tuple[tuple[str, int], ...] = (
    ("60 seconds", 60),
    ("5 minutes", 5 * 60),
    ("10 minutes", 10 * 60),
    ("1 hour", 3600),
    ("1 day", 24 * 3600),
    ("1 week", 7 * 24 * 3600),
)
#: How much of a banned member's history a ban deletes, as (label, seconds).
BAN_DELETE_CHOICES: tuple[tuple[str, int], ...] = (
    ("Don't delete any", 0),
    ("Last hour", 3600),
    ("Last 24 hours", 24 * 3600),
    ("Last 7 days", 7 * 24 * 3600),
)

ADMINISTRATOR = "administrator"

BANNED_TEXT = "You have been banned from this server."
SERVER_MUTED_TEXT = "Muted by a moderator"
SERVER_DEAFENED_TEXT = "Deafened by a moderator"


def _held(roles: Iterable[Role], names: Collection[str]) -> list[Role]:
    """The roles someone holds: those named, and the default role everyone has."""
    return [role for role in roles if role.is_default or role.name in names]


def permissions_of(roles: Iterable[Role], names: Collection[str]) -> frozenset[str]:
    """Everything the holder of the named roles may do (with the default role's)."""
    return frozenset(p for role in _held(roles, names) for p in role.permissions)


def top_position(roles: Iterable[Role], names: Collection[str]) -> int:
    """The position of someone's highest assigned role (0 with none: the default role)."""
    return max((role.position for role in _held(roles, names) if not role.is_default), default=0)


def allowed_actions(
    roles: Iterable[Role],
    *,
    my_id: UUID | None,
    my_roles: Collection[str],
    target_id: UUID,
    target_roles: Collection[str],
    target_in_voice: bool,
) -> frozenset[ModerationAction]:
    """The context-menu items the signed-in user may use on a member.

    Args:
        roles: the server's roles (`GET /roles`).
        my_id: the signed-in user's id.
        my_roles: the names of the signed-in user's roles (their profile's `roles`).
        target_id: the member's id.
        target_roles: the names of the member's roles (empty: only the default role).
        target_in_voice: whether the member is in a voice channel (voice items need it).
    """
    roles = list(roles)
    if my_id is None or target_id == my_id:
        return frozenset()
    mine = permissions_of(roles, my_roles)
    if ADMINISTRATOR in permissions_of(roles, target_roles):
        return frozenset()
    administrator = ADMINISTRATOR in mine
    if not administrator and top_position(roles, target_roles) >= top_position(roles, my_roles):
        return frozenset()
    return frozenset(
        action
        for action, permission in REQUIRED_PERMISSION.items()
        if (administrator or permission in mine)
        and (target_in_voice or action not in VOICE_ACTIONS)
    )


def timed_out_until(until: datetime | None, now: datetime) -> datetime | None:
    """When a timeout ends, if it is still running at `now` (None: not timed out)."""
    if until is None or until <= now:
        return None
    return until


def timeout_text(until: datetime) -> str:
    """The composer's hint while the user is timed out (the end in local time)."""
    local = until.astimezone()
    if local.date() != datetime.now(local.tzinfo).date():
        return f"You can read but not send until {local:%d %b %H:%M}"
    return f"You can read but not send until {local:%H:%M}"


#: The context menu's wording of each action, in the order it lists them.
ACTION_LABELS: dict[ModerationAction, str] = {
    ModerationAction.SERVER_MUTE: "Server mute",
    ModerationAction.SERVER_DEAFEN: "Server deafen",
    ModerationAction.MOVE: "Move to…",
    ModerationAction.DISCONNECT: "Disconnect from voice",
    ModerationAction.TIMEOUT: "Timeout…",
    ModerationAction.BAN: "Ban…",
}


def menu_items(actions: Collection[ModerationAction]) -> list[tuple[str, ModerationAction]]:
    """The moderation items of a member's context menu, as (label, action), in menu order."""
    return [(label, action) for action, label in ACTION_LABELS.items() if action in actions]


class MemberModeration:
    """The moderation actions of the signed-in user, for the context menus.

    Each action returns True when the server did it; otherwise the error (a refusal such as
    `role_hierarchy`, the network) is reported through the feed as a sentence and it returns
    False, never raises.

    Args:
        client: the logged-in client.
        feed: where errors are reported.
        my_roles: the names of the signed-in user's roles, read when asked.
        in_voice: whether a user id is in a voice channel, read when asked.
    """

    def __init__(
        self,
        client: Client,
        feed: ChangeFeed,
        my_roles: Callable[[], Collection[str]],
        in_voice: Callable[[UUID], bool],
    ) -> None:
        self._client = client
        self._feed = feed
        self._my_roles = my_roles
        self._in_voice = in_voice
        self.roles: list[Role] = []
        # Members' role names where known (`member.update`); missing: the default role only.
        self.member_roles: dict[UUID, list[str]] = {}

    async def load_roles(self) -> None:
        """Fetch the server's roles (the menu shows nothing until they are known)."""
        try:
            self.roles = await self._client.roles()
        except (ApiError, *NETWORK_ERRORS) as exc:
            log.info("roles not loaded: %s", exc)

    def actions_for(self, user_id: UUID | str) -> frozenset[ModerationAction]:
        """What the signed-in user may do to this member now."""
        target = UUID(str(user_id))
        me = self._client.user
        return allowed_actions(
            self.roles,
            my_id=me.id if me is not None else None,
            my_roles=self._my_roles(),
            target_id=target,
            target_roles=self.member_roles.get(target, []),
            target_in_voice=self._in_voice(target),
        )

    async def _do(self, call: Awaitable[object]) -> bool:
        try:
            await call
        except (ApiError, TimeoutError, *NETWORK_ERRORS) as exc:
            self._feed.report(exc)
            return False
        return True

    async def ban(
        self, user_id: UUID | str, *, reason: str | None, delete_message_seconds: int
    ) -> bool:
        """Ban a member (and delete their messages of the last `delete_message_seconds`)."""
        return await self._do(
            self._client.ban(
                user_id, reason=reason or None, delete_message_seconds=delete_message_seconds
            )
        )

    async def timeout(self, user_id: UUID | str, seconds: int, *, reason: str | None) -> bool:
        """Time a member out for `seconds` from now."""
        until = datetime.now(UTC) + timedelta(seconds=seconds)
        return await self._do(self._client.timeout(user_id, until, reason=reason or None))

    async def set_server_mute(self, user_id: UUID | str, muted: bool) -> bool:
        """Server mute (or unmute) someone in voice."""
        return await self._do(self._client.update_voice_state(user_id, server_mute=muted))

    async def set_server_deaf(self, user_id: UUID | str, deafened: bool) -> bool:
        """Server deafen (or undeafen) someone in voice."""
        return await self._do(self._client.update_voice_state(user_id, server_deaf=deafened))

    async def move(self, user_id: UUID | str, channel_id: UUID | str) -> bool:
        """Move someone to another voice channel."""
        return await self._do(self._client.update_voice_state(user_id, channel_id=channel_id))

    async def disconnect(self, user_id: UUID | str) -> bool:
        """Disconnect someone from voice."""
        return await self._do(self._client.update_voice_state(user_id, channel_id=None))
