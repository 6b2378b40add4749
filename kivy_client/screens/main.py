"""The main screen: channels on the left, messages in the middle, members on the right, the
voice bar under the channels and a banner while the connection is down."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.lang import Builder
from kivy.metrics import dp
from kivy.properties import BooleanProperty, ListProperty, StringProperty
from kivy.uix.label import Label

from kivy_client import KV_DIR, theme
from kivy_client.app import ClientScreen
from kivy_client.widgets.common import SectionLabel
from kivy_client.widgets.messages import (
    ATTACHMENT_ROW,
    ROW_PADDING,
    SIDE_SPACE,
    HeightCache,
    MessageView,
    message_markup,
)
from kivy_client.widgets.panels import (
    ChannelRow,
    MemberRow,
    VoiceParticipantRow,
    display_name,
    row_height,
)

Builder.load_file(str(KV_DIR / "main.kv"))

# Change kinds that never alter the message list: a redraw for them skips the history.
_NOT_MESSAGES = {"voice", "typing", "members", "presence", "state", "me", "error", "speaking"}

QUALITY = {
    "good": "[color=23a55a]Good connection[/color]",
    "fair": "[color=f0b232]Fair connection[/color]",
    "poor": "[color=da373c]Poor connection[/color]",
    "unknown": "",  # nothing received yet: nothing to judge
}

BANNERS = {
    "connecting": "Connecting…",
    "reconnecting": "Connection lost. Reconnecting… Messages you send will be delivered then.",
    "offline": "You are offline. Messages you send will be delivered when you are back.",
}


class MainScreen(ClientScreen):
    """Chat and voice for one server."""

    channel_id = StringProperty("")
    channel_title = StringProperty("")
    channel_topic = StringProperty("")
    banner = StringProperty("")
    typing_text = StringProperty("")
    composer_note = StringProperty("")
    in_voice = BooleanProperty(False)
    voice_title = StringProperty("")
    voice_quality = StringProperty("")
    self_muted = BooleanProperty(False)
    self_deafened = BooleanProperty(False)
    me_name = StringProperty("")
    me_status = StringProperty("online")
    pending_files = ListProperty([])

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heights = HeightCache()
        self.reply_to: str | None = None
        self.editing: str | None = None
        self._loading_older = False
        self._width_seen = 0.0
        self._quality_poll = Clock.create_trigger(self._draw_quality, 2.0)
        # What the side panels show now, to rebuild them only when it changed.
        self._sidebar_rows: list[tuple[Any, ...]] = []
        # The voice participant rows on screen, in the order of their sidebar rows: speaking
        # and mute changes update these in place instead of rebuilding the list.
        self._participant_widgets: list[VoiceParticipantRow] = []
        self._member_rows: list[tuple[str, str, str]] = []
        Window.bind(on_key_down=self._on_key_down, on_key_up=self._on_key_up)
        self.bind(width=self._on_width)

    def reset(self) -> None:
        """Forget the channel shown and what was being composed (a new session starts)."""
        self.channel_id = self.channel_title = self.channel_topic = ""
        self.typing_text = ""
        self.ids.composer.text = ""
        self.cancel_compose_state()
        self.messages.pin_to_newest()
        self.messages.set_rows([])
        self._sidebar_rows, self._member_rows = [], []
        self._participant_widgets = []

    @property
    def session(self) -> Any:
        """The app's session (set while this screen shows)."""
        return App.get_running_app().session

    @property
    def messages(self) -> MessageView:
        """The message list widget."""
        view: MessageView = self.ids.messages
        return view

    # -- redraws ------------------------------------------------------------------------------

    def refresh(self, kinds: set[str]) -> None:
        session = self.session
        if session is None:
            return
        state = str(session.state)
        self.banner = BANNERS.get(state, "")
        if not self.channel_id:
            first = _first_text_channel(session)
            if first is not None:
                self.select_channel(str(first.id))
                return
        if state == "online" and "state" in kinds:
            timeline = session.timeline(self.channel_id)
            if not timeline.loaded:
                # Opened while the server was unreachable: load it now that it answers.
                App.get_running_app().spawn(
                    session.select_channel(self.channel_id), "load the channel"
                )
        self._draw_me(session)
        self._draw_sidebar(session)
        self._draw_voice(session)
        self._draw_members(session)
        self._draw_typing(session)
        if "*" in kinds or not kinds <= _NOT_MESSAGES:
            self._draw_messages(session)

    def _draw_me(self, session: Any) -> None:
        me = session.me
        self.me_name = display_name(me) if me is not None else ""
        member = _member(session, me.id) if me is not None and me.id is not None else None
        self.me_status = str(member.presence) if member is not None else "online"

    def _draw_sidebar(self, session: Any) -> None:
        voice = session.voice
        voice_channel = str(voice.channel_id) if voice is not None else None
        rows: list[tuple[Any, ...]] = []
        for category, channels in _channel_groups(session):
            if category is not None:
                rows.append(("section", category.name.upper()))
            for channel in channels:
                selected = str(channel.id) in (self.channel_id, voice_channel)
                unread = 0 if selected else _unread(session, channel)
                rows.append(
                    ("channel", str(channel.id), channel.type, channel.name, selected, unread)
                )
                if channel.type == "voice":
                    rows += _voice_members(session, str(channel.id))
        dms = list(_dms(session))
        if dms:
            rows.append(("section", "DIRECT MESSAGES"))
            for channel in dms:
                title = _dm_title(channel, session)
                selected = str(channel.id) == self.channel_id
                unread = 0 if selected else _unread(session, channel)
                rows.append(("channel", str(channel.id), "dm", title, selected, unread))
        if rows == self._sidebar_rows:
            return  # unchanged: keep the widgets (and their positions)
        if _layout(rows) == _layout(self._sidebar_rows):
            # Only who speaks or is muted changed (several times a second in a call): update
            # those rows' properties; their kv bindings redraw just the ring and the name.
            self._sidebar_rows = rows
            participants = [values for kind, *values in rows if kind == "participant"]
            for widget, (_user_id, _label, speaking, muted) in zip(
                self._participant_widgets, participants, strict=True
            ):
                widget.speaking, widget.muted = speaking, muted
            return
        self._sidebar_rows = rows
        self._participant_widgets = []
        box = self.ids.channel_list
        box.clear_widgets()
        for kind, *values in rows:
            if kind == "section":
                box.add_widget(_section(values[0]))
            elif kind == "channel":
                channel_id, channel_type, label, selected, unread = values
                row = ChannelRow(
                    channel_id=channel_id,
                    kind=channel_type,
                    label=label,
                    selected=selected,
                    unread=unread,
                    height=row_height(channel_type),
                )
                row.bind(on_release=self._on_channel_row)
                box.add_widget(row)
            else:
                user_id, label, speaking, muted = values
                participant = VoiceParticipantRow(
                    user_id=user_id,
                    label=label,
                    speaking=speaking,
                    muted=muted,
                    height=row_height("participant"),
                )
                self._participant_widgets.append(participant)
                box.add_widget(participant)

    def _draw_voice(self, session: Any) -> None:
        voice = session.voice
        self.in_voice = voice is not None
        if voice is None:
            self.voice_title, self.voice_quality = "", ""
            self._quality_poll.cancel()
            return
        channel = _find_channel(session, str(voice.channel_id))
        self.voice_title = channel.name if channel is not None else "Voice"
        self.self_muted = bool(voice.muted)
        self.self_deafened = bool(voice.deafened)
        if not voice.connected:
            self.voice_quality = "Connecting…"
        elif not self._quality_poll.is_triggered or self.voice_quality == "Connecting…":
            self._draw_quality(0)  # then every 2 s (not on each speaking change)

    def _draw_quality(self, _dt: float) -> None:
        """The engine's connection quality (polled every 2 s, only while in a call)."""
        session = self.session
        if session is None or session.voice is None:
            self._quality_poll.cancel()
            self.voice_quality = ""
            return
        quality = str(session.voice_stats().get("quality", "unknown"))
        self.voice_quality = QUALITY.get(quality, "")
        if not self._quality_poll.is_triggered:
            self._quality_poll()

    def _draw_members(self, session: Any) -> None:
        members = [
            (str(m.user.id), display_name(m.user), str(m.presence)) for m in session.member_list()
        ]
        if members == self._member_rows:
            return
        self._member_rows = members
        box = self.ids.member_list
        box.clear_widgets()
        groups: dict[str, list[MemberRow]] = {"online": [], "offline": []}
        for user_id, name, status in members:
            row = MemberRow(
                user_id=user_id, label=name, status=status, dot=theme.presence_colour(status)
            )
            row.bind(on_release=self._on_member_row)
            groups["offline" if status == "offline" else "online"].append(row)
        for group, rows in groups.items():
            if rows:
                box.add_widget(_section(f"{group.upper()} — {len(rows)}"))
                for row in rows:
                    box.add_widget(row)

    def _draw_typing(self, session: Any) -> None:
        if not self.channel_id:
            self.typing_text = ""
            return
        names = [display_name(user) for user in session.timeline(self.channel_id).typing_users]
        if not names:
            self.typing_text = ""
        elif len(names) == 1:
            self.typing_text = f"{names[0]} is typing…"
        elif len(names) <= 3:
            self.typing_text = f"{', '.join(names[:-1])} and {names[-1]} are typing…"
        else:
            self.typing_text = "Several people are typing…"

    def _draw_messages(self, session: Any) -> None:
        view = self.messages
        if not self.channel_id:
            view.set_rows([])
            return
        timeline = session.timeline(self.channel_id)
        me = session.me
        my_id = str(me.id) if me is not None else None
        width = max(view.width - dp(SIDE_SPACE), dp(100))
        rows: list[dict[str, Any]] = []
        if timeline.has_more:
            note = "Loading older messages…" if self._loading_older else "Scroll up for more"
            rows.append({"viewclass": "ChannelStart", "text": note, "height": dp(40)})
        else:
            rows.append(
                {
                    "viewclass": "ChannelStart",
                    "text": f"This is the beginning of {self.channel_title}.",
                    "height": dp(56),
                }
            )
        for entry in timeline.entries:
            message, pending = entry.message, entry.pending
            reply = timeline.get(message.reply_to) if message.reply_to is not None else None
            markup = message_markup(message, reply, pending=pending, error=entry.error)
            key = (str(message.id), message.edited_at, pending, entry.error, reply is not None)
            text_height = self.heights.height(key, markup, width)
            attachments = list(message.attachments or [])
            rows.append(
                {
                    "viewclass": "MessageRow",
                    "message_id": str(message.id),
                    "markup": markup,
                    "own": my_id is not None
                    and str(message.author.id) == my_id
                    and not entry.error,
                    "pending": pending,
                    "failed": entry.error is not None,
                    "initial": display_name(message.author)[:1].upper(),
                    "attachments": attachments,
                    "text_height": text_height,
                    "height": text_height + dp(ROW_PADDING * 2 + ATTACHMENT_ROW * len(attachments)),
                }
            )
        view.set_rows(rows)

    def _on_width(self, _instance: Any, width: float) -> None:
        if abs(width - self._width_seen) > 1 and self.session is not None:
            self._width_seen = width
            Clock.schedule_once(lambda _dt: self._draw_messages(self.session), 0)

    # -- channels -----------------------------------------------------------------------------

    def _on_channel_row(self, row: ChannelRow) -> None:
        if row.kind == "voice":
            self.join_voice(row.channel_id)
        else:
            self.select_channel(row.channel_id)

    def _on_member_row(self, row: MemberRow) -> None:
        me = self.session.me
        if me is not None and str(me.id) == row.user_id:
            return
        self.open_dm(row.user_id)

    def open_dm(self, user_id: str) -> None:
        """Open (creating if needed) the direct messages with someone."""
        session, app = self.session, App.get_running_app()

        async def open_it() -> None:
            channel = await session.open_dm(user_id)
            if channel is not None:  # else the session reports why
                self.select_channel(str(channel.id))

        app.spawn(open_it(), "open the direct messages")

    def select_channel(self, channel_id: str) -> None:
        """Show a text channel or DM and load its latest messages."""
        session = self.session
        channel = _find_channel(session, channel_id)
        self.channel_id = channel_id
        if channel is not None:
            if channel.type == "dm":
                self.channel_title = _dm_title(channel, session)
            else:
                self.channel_title = f"#{channel.name}"
            self.channel_topic = channel.topic or ""
        self.cancel_compose_state()
        self.messages.pin_to_newest()
        app = App.get_running_app()
        app.spawn(session.select_channel(channel_id), "open the channel")
        self.refresh({"*"})

    def load_older(self) -> None:
        """Fetch the page before the oldest loaded message (scrolled to the top)."""
        session = self.session
        if session is None or self._loading_older or not self.channel_id:
            return
        timeline = session.timeline(self.channel_id)
        if not timeline.has_more:
            return
        self._loading_older = True
        channel_id = self.channel_id

        async def load() -> None:
            try:
                await session.load_older(channel_id)  # the timeline change redraws
            finally:
                self._loading_older = False

        App.get_running_app().spawn(load(), "load older messages")

    # -- composer -----------------------------------------------------------------------------

    def on_composer_text(self, text: str) -> None:
        """Tell the others we are typing (the session sends it at most every few seconds)."""
        if text and self.channel_id and self.editing is None:
            App.get_running_app().spawn(self.session.typing(self.channel_id), "send typing")

    def send(self) -> None:
        """Send (or save an edit of) what is in the composer."""
        composer = self.ids.composer
        text = composer.text.strip()
        session, app = self.session, App.get_running_app()
        if not self.channel_id or session is None:
            return
        if self.editing is not None:
            if text:
                app.spawn(session.edit(self.editing, text), "edit the message")
            composer.text = ""
            self.cancel_compose_state()
            return
        files = [Path(p) for p in self.pending_files]
        if not text and not files:
            return
        reply_to = self.reply_to
        composer.text = ""
        self.cancel_compose_state()
        self.messages.pin_to_newest()
        app.spawn(
            session.send(self.channel_id, text, reply_to=reply_to, attachments=files),
            "send the message",
        )
        Clock.schedule_once(lambda _dt: setattr(composer, "focus", True), 0)

    def start_reply(self, message_id: str) -> None:
        """Reply to a message: the composer shows who you are answering."""
        message = self._message(message_id)
        self.editing = None
        self.reply_to = message_id
        who = display_name(message.author) if message is not None else "a message"
        self.composer_note = f"Replying to {who}  —  Esc to cancel"
        self.ids.composer.focus = True

    def start_edit(self, message_id: str) -> None:
        """Put one's own message in the composer to change it."""
        message = self._message(message_id)
        if message is None:
            return
        self.reply_to = None
        self.editing = message_id
        self.composer_note = "Editing message  —  Enter to save, Esc to cancel"
        self.ids.composer.text = message.content or ""
        self.ids.composer.focus = True

    def confirm_delete(self, message_id: str) -> None:
        """Ask, then delete one's own message."""
        from kivy_client.widgets.dialogs import confirm

        def delete() -> None:
            App.get_running_app().spawn(self.session.delete(message_id), "delete the message")

        confirm("Delete message", "Delete this message for everyone?", "Delete", delete)

    def cancel_compose_state(self) -> None:
        """Forget a reply/edit in progress and the files picked for attaching."""
        self.reply_to = self.editing = None
        self.composer_note = ""
        self.pending_files = []

    def pick_files(self) -> None:
        """Choose files to attach to the next message."""
        from kivy_client.widgets.dialogs import pick_file

        def chosen(path: str) -> None:
            self.pending_files = [*self.pending_files, path]
            self.composer_note = "Attached: " + ", ".join(Path(p).name for p in self.pending_files)

        pick_file(chosen)

    def download(self, attachment: Any) -> None:
        """Save an attachment into the downloads folder, then say where."""
        app = App.get_running_app()
        folder = Path(app.settings.download_dir or Path.home() / "Downloads")

        async def save() -> None:
            path = await self.session.download(attachment, folder)
            if path is not None:  # else the session reports why, as an error change
                app.toast(f"Saved {path.name} to {path.parent}")

        app.spawn(save(), f"download {attachment.filename}")

    def edit_last_own(self) -> bool:
        """Up arrow in an empty composer edits one's last message (as in Discord)."""
        session = self.session
        if session is None or session.me is None or not self.channel_id:
            return False
        for message in reversed(session.timeline(self.channel_id).messages):  # sent ones
            if str(message.author.id) == str(session.me.id):
                self.start_edit(str(message.id))
                return True
        return False

    def _entry(self, message_id: str) -> Any:
        for entry in self.session.timeline(self.channel_id).entries:
            if str(entry.id) == message_id:
                return entry
        return None

    def retry(self, message_id: str) -> None:
        """Send a refused message again."""
        entry = self._entry(message_id)
        if entry is not None:
            App.get_running_app().spawn(self.session.retry(entry), "send the message")

    def discard(self, message_id: str) -> None:
        """Drop a refused (or still waiting) message."""
        entry = self._entry(message_id)
        if entry is not None:
            self.session.discard(entry)

    def _message(self, message_id: str) -> Any:
        return self.session.timeline(self.channel_id).get(UUID(message_id))

    # -- voice --------------------------------------------------------------------------------

    def join_voice(self, channel_id: str) -> None:
        """Join a voice channel (leaving the current one)."""
        App.get_running_app().spawn(self.session.join_voice(channel_id), "join the voice channel")

    def leave_voice(self) -> None:
        """Leave the voice channel."""
        App.get_running_app().spawn(self.session.leave_voice(), "leave the voice channel")

    def toggle_mute(self) -> None:
        """Mute or unmute the microphone."""
        app = App.get_running_app()
        app.spawn(self.session.set_muted(not self.self_muted), "change mute")

    def toggle_deafen(self) -> None:
        """Deafen (hear nobody, and be muted) or undeafen."""
        app = App.get_running_app()
        app.spawn(self.session.set_deafened(not self.self_deafened), "change deafen")

    def open_settings(self) -> None:
        """Show the settings screen."""
        App.get_running_app().show_screen("settings")

    # -- keyboard -----------------------------------------------------------------------------

    def _ptt_key(self) -> str | None:
        settings = App.get_running_app().settings
        if settings.audio.mode != "push_to_talk":
            return None
        return str(settings.ptt_key)

    def _on_key_down(self, _window: Any, key: int, _scancode: int, _text: Any, mods: Any) -> Any:
        if self.manager is None or self.manager.current != self.name:
            return False
        name = _key_name(key)
        ptt = self._ptt_key()
        if ptt is not None and name == ptt and self.in_voice:
            self.session.push_to_talk(True)
            return not self.ids.composer.focus
        composer = self.ids.composer
        if name == "escape":
            if self.messages.menu is not None:
                self.messages.menu.dismiss()
                self.messages.menu = None
            if self.editing is not None:
                composer.text = ""
            self.cancel_compose_state()
            return True
        if name == "up" and composer.focus and not composer.text:
            return self.edit_last_own()
        if "ctrl" in (mods or []) and name == "m" and self.in_voice:
            self.toggle_mute()
            return True
        if "ctrl" in (mods or []) and name == "d" and self.in_voice:
            self.toggle_deafen()
            return True
        if "ctrl" in (mods or []) and name == ",":
            self.open_settings()
            return True
        return False

    def _on_key_up(self, _window: Any, key: int, *_args: Any) -> Any:
        if self.manager is None or self.manager.current != self.name:
            return False
        ptt = self._ptt_key()
        if ptt is not None and self.in_voice and _key_name(key) == ptt:
            self.session.push_to_talk(False)
            return True
        return False


def _layout(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Sidebar rows without what a participant row updates in place (speaking, muted)."""
    return [row[:3] if row[0] == "participant" else row for row in rows]


def _key_name(key: int) -> str:
    """Kivy's name for a key code (`"f8"`, `"enter"`, `"a"`)."""
    return str(Window._system_keyboard.keycode_to_string(key))


def _section(text: str) -> Label:
    return SectionLabel(text=text)


# -- reading the session (shapes of voicechat.sdk.app) ---------------------------------------


def _channel_groups(session: Any) -> list[tuple[Any, list[Any]]]:
    """(category or None, its text and voice channels), in the server's order."""
    return [(group.category, list(group.channels)) for group in session.channels.categories]


def _dms(session: Any) -> list[Any]:
    return list(session.channels.dms)


def _find_channel(session: Any, channel_id: str) -> Any:
    return session.channels.get(UUID(channel_id))


def _member(session: Any, user_id: Any) -> Any:
    return session.members.get(UUID(str(user_id)))


def _unread(session: Any, channel: Any) -> int:
    if channel.type == "voice":
        return 0
    return int(session.timeline(channel.id).unread)


def _first_text_channel(session: Any) -> Any:
    for _category, channels in _channel_groups(session):
        for channel in channels:
            if channel.type == "text":
                return channel
    return None


def _dm_title(channel: Any, session: Any) -> str:
    return str(session.channel_title(channel))


def _voice_members(session: Any, channel_id: str) -> list[tuple[Any, ...]]:
    """Sidebar rows for the people in a voice channel, by name."""
    rows = []
    room = session.channels.voice_rooms.get(UUID(channel_id), {})
    for user_id, participant in room.items():
        member = _member(session, user_id)
        name = display_name(member.user) if member is not None else "someone"
        rows.append(
            ("participant", str(user_id), name, bool(participant.speaking), bool(participant.muted))
        )
    rows.sort(key=lambda row: str(row[2]).lower())
    return rows
