"""The side panels of the main screen: channel rows, voice participants, member rows, the
voice bar. They are plain widgets rebuilt from the SDK's view-model rows
(`voicechat.sdk.app.view_rows`) when those change (tens of rows)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kivy.metrics import dp
from kivy.properties import BooleanProperty, ColorProperty, NumericProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout

from kivy_client import theme
from kivy_client.widgets.common import SectionLabel
from voicechat.sdk.app.view_rows import (
    MemberListRow,
    SidebarChannel,
    SidebarParticipant,
    SidebarRow,
    SidebarSection,
    member_groups,
    same_layout,
)


class ChannelRow(ButtonBehavior, BoxLayout):  # type: ignore[misc]
    """A text or voice channel (or a DM) in the sidebar."""

    channel_id = StringProperty("")
    kind = StringProperty("text")  # text | voice | dm
    label = StringProperty("")
    selected = BooleanProperty(False)
    unread = NumericProperty(0)  # messages not seen yet (a badge)

    @property
    def icon(self) -> str:
        """The glyph before the name."""
        return {"text": "#", "voice": "", "dm": "@"}.get(self.kind, "#")


class VoiceParticipantRow(ButtonBehavior, BoxLayout):  # type: ignore[misc]
    """Someone in a voice channel, under it in the sidebar; green while speaking; a click
    opens their context menu."""

    user_id = StringProperty("")
    label = StringProperty("")
    speaking = BooleanProperty(False)
    muted = BooleanProperty(False)
    deafened = BooleanProperty(False)


class MemberRow(ButtonBehavior, BoxLayout):  # type: ignore[misc]
    """A member in the right-hand list, with a presence dot."""

    user_id = StringProperty("")
    label = StringProperty("")
    status = StringProperty("offline")
    dot = ColorProperty((0.5, 0.5, 0.5, 1))


def row_height(kind: str) -> float:
    """Heights of sidebar rows, so the list's height is known without a layout pass."""
    return float(dp({"category": 30, "participant": 26}.get(kind, 34)))


class SidebarList:
    """Draws the channel sidebar's rows into its box, rebuilding widgets only when the rows
    changed, and only the participant rows' state when only who speaks or is muted did.

    Args:
        box: the layout the rows go in.
        on_channel: called with a channel row when it is clicked.
        on_participant: called with a voice participant's row when it is clicked.
    """

    def __init__(
        self,
        box: Any,
        on_channel: Callable[[ChannelRow], None],
        on_participant: Callable[[VoiceParticipantRow], None] | None = None,
    ) -> None:
        self._box = box
        self._on_channel = on_channel
        self._on_participant = on_participant
        self._rows: list[SidebarRow] = []
        # The participant widgets on screen, in the order of their rows.
        self._participants: list[VoiceParticipantRow] = []

    def clear(self) -> None:
        """Forget what was drawn (the next `show` rebuilds)."""
        self._rows, self._participants = [], []

    def show(self, rows: list[SidebarRow]) -> None:
        """Draw these rows."""
        if rows == self._rows:
            return  # unchanged: keep the widgets (and their positions)
        if same_layout(rows, self._rows):
            # Only who speaks or is muted changed (several times a second in a call): update
            # those rows' properties; their kv bindings redraw just the ring and the name.
            self._rows = rows
            participants = [row for row in rows if isinstance(row, SidebarParticipant)]
            for widget, person in zip(self._participants, participants, strict=True):
                widget.speaking, widget.muted = person.speaking, person.muted
            return
        self._rows, self._participants = rows, []
        self._box.clear_widgets()
        for row in rows:
            if isinstance(row, SidebarSection):
                self._box.add_widget(SectionLabel(text=row.title))
            elif isinstance(row, SidebarChannel):
                widget = ChannelRow(
                    channel_id=row.channel_id,
                    kind=row.kind,
                    label=row.label,
                    selected=row.selected,
                    unread=row.unread,
                    height=row_height(row.kind),
                )
                widget.bind(on_release=self._on_channel)
                self._box.add_widget(widget)
            else:
                participant = VoiceParticipantRow(
                    user_id=row.user_id,
                    label=row.label,
                    speaking=row.speaking,
                    muted=row.muted,
                    height=row_height("participant"),
                )
                if self._on_participant is not None:
                    participant.bind(on_release=self._on_participant)
                self._participants.append(participant)
                self._box.add_widget(participant)


class MemberList:
    """Draws the member list under its ONLINE / OFFLINE headings, when its rows changed.

    Args:
        box: the layout the rows go in.
        on_member: called with a member row when it is clicked.
    """

    def __init__(self, box: Any, on_member: Callable[[MemberRow], None]) -> None:
        self._box = box
        self._on_member = on_member
        self._rows: list[MemberListRow] = []

    def clear(self) -> None:
        """Forget what was drawn (the next `show` rebuilds)."""
        self._rows = []

    def show(self, rows: list[MemberListRow]) -> None:
        """Draw these rows."""
        if rows == self._rows:
            return
        self._rows = rows
        self._box.clear_widgets()
        for group in member_groups(rows):
            self._box.add_widget(SectionLabel(text=group.title))
            for row in group.rows:
                widget = MemberRow(
                    user_id=row.user_id,
                    label=row.label,
                    status=row.status,
                    dot=theme.presence_colour(row.status),
                )
                widget.bind(on_release=self._on_member)
                self._box.add_widget(widget)
