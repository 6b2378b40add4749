"""View-model rows: what the side panels and the typing line show, as plain frozen data built
by pure functions from the session's state.

A screen draws these and compares them with the rows it drew last, to rebuild its widgets only
when something changed; nothing here knows Kivy or the session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from voicechat.sdk.app.state import ChannelTree, Member, VoiceParticipant
from voicechat.sdk.models import Channel, User

ChannelKind = Literal["text", "voice", "dm"]


def user_label(user: User | None) -> str:
    """What to call a user in a row (their display name, else username, else "someone")."""
    if user is None:
        return "someone"
    return user.name or "someone"


@dataclass(frozen=True, slots=True)
class SidebarSection:
    """A heading: a category's name, or DIRECT MESSAGES."""

    title: str


@dataclass(frozen=True, slots=True)
class SidebarChannel:
    """A text or voice channel, or a DM."""

    channel_id: str
    kind: ChannelKind
    label: str
    selected: bool
    unread: int


@dataclass(frozen=True, slots=True)
class SidebarParticipant:
    """Someone in a voice channel, under it."""

    user_id: str
    label: str
    speaking: bool
    muted: bool


SidebarRow = SidebarSection | SidebarChannel | SidebarParticipant


def sidebar_rows(
    channels: ChannelTree,
    *,
    shown_channel: str,
    voice_channel: str | None,
    unread: Mapping[UUID, int],
    user: Callable[[UUID], User | None],
    title: Callable[[Channel], str],
) -> list[SidebarRow]:
    """The channel sidebar: each category's channels (with the people in voice channels),
    then the DMs.

    Args:
        channels: the channel tree (with its voice rooms).
        shown_channel: the id of the channel on screen ("" for none).
        voice_channel: the id of the channel of the user's call, if in one.
        unread: messages not seen yet, by channel (missing: none).
        user: a member's profile by id (None: not known yet).
        title: what to call a DM.
    """
    rows: list[SidebarRow] = []
    for group in channels.categories:
        if group.category is not None:
            rows.append(SidebarSection(group.category.name.upper()))
        for channel in group.channels:
            channel_id = str(channel.id)
            selected = channel_id in (shown_channel, voice_channel)
            count = 0 if selected or channel.type == "voice" else unread.get(channel.id, 0)
            kind: ChannelKind = "voice" if channel.type == "voice" else "text"
            rows.append(SidebarChannel(channel_id, kind, channel.name, selected, count))
            if channel.type == "voice":
                rows += participant_rows(channels.voice_rooms.get(channel.id, {}), user)
    dms = channels.dms
    if dms:
        rows.append(SidebarSection("DIRECT MESSAGES"))
        for channel in dms:
            selected = str(channel.id) == shown_channel
            count = 0 if selected else unread.get(channel.id, 0)
            rows.append(SidebarChannel(str(channel.id), "dm", title(channel), selected, count))
    return rows


def participant_rows(
    room: Mapping[UUID, VoiceParticipant], user: Callable[[UUID], User | None]
) -> list[SidebarParticipant]:
    """The people in one voice channel, by name."""
    rows = [
        SidebarParticipant(
            str(user_id), user_label(user(user_id)), participant.speaking, participant.muted
        )
        for user_id, participant in room.items()
    ]
    rows.sort(key=lambda row: row.label.lower())
    return rows


def same_layout(old: list[SidebarRow], new: list[SidebarRow]) -> bool:
    """Whether two sidebars differ at most in who speaks or is muted: then the participant
    rows can be updated in place instead of rebuilding the list."""
    return [_layout_key(row) for row in old] == [_layout_key(row) for row in new]


def _layout_key(row: SidebarRow) -> object:
    if isinstance(row, SidebarParticipant):
        return ("participant", row.user_id, row.label)
    return row


def first_text_channel(channels: ChannelTree) -> Channel | None:
    """The channel to show when none is chosen: the first text channel in sidebar order."""
    for group in channels.categories:
        for channel in group.channels:
            if channel.type == "text":
                return channel
    return None


@dataclass(frozen=True, slots=True)
class MemberListRow:
    """A member in the right-hand list."""

    user_id: str
    label: str
    status: str


@dataclass(frozen=True, slots=True)
class MemberGroup:
    """A heading of the member list (ONLINE — 3) and its rows."""

    title: str
    rows: tuple[MemberListRow, ...]


def member_rows(members: Iterable[Member]) -> list[MemberListRow]:
    """Rows for members in the order given (see :meth:`AppSession.member_list`)."""
    return [MemberListRow(str(m.user.id), user_label(m.user), str(m.presence)) for m in members]


def member_groups(rows: Iterable[MemberListRow]) -> list[MemberGroup]:
    """The member list under its headings: everyone not offline, then offline (empty groups
    left out)."""
    groups: dict[str, list[MemberListRow]] = {"online": [], "offline": []}
    for row in rows:
        groups["offline" if row.status == "offline" else "online"].append(row)
    return [
        MemberGroup(f"{name.upper()} — {len(members)}", tuple(members))
        for name, members in groups.items()
        if members
    ]


def typing_text(names: list[str]) -> str:
    """The line under the composer: who is typing."""
    if not names:
        return ""
    if len(names) == 1:
        return f"{names[0]} is typing…"
    if len(names) <= 3:
        return f"{', '.join(names[:-1])} and {names[-1]} are typing…"
    return "Several people are typing…"
