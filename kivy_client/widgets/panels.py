"""The side panels of the main screen: channel rows, voice participants, member rows, the
voice bar. They are plain widgets rebuilt from the session when it changes (tens of rows)."""

from __future__ import annotations

from typing import Any

from kivy.metrics import dp
from kivy.properties import BooleanProperty, ColorProperty, NumericProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout


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


class VoiceParticipantRow(BoxLayout):  # type: ignore[misc]
    """Someone in a voice channel, under it in the sidebar; green while speaking."""

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


def display_name(user: Any) -> str:
    """What to call a user (a `User`, or anything with `name`/`username`)."""
    name = getattr(user, "name", None) or getattr(user, "username", None)
    return str(name) if name else "someone"
