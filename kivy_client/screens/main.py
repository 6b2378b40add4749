"""The main screen: channels on the left, messages in the middle, members on the right, the
voice bar under the channels and a banner while the connection is down."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from kivy.clock import Clock
from kivy.core.window import Window
from kivy.lang import Builder
from kivy.metrics import dp
from kivy.properties import BooleanProperty, ListProperty, StringProperty

from kivy_client import KV_DIR
from kivy_client.running import ClientScreen, running_app
from kivy_client.screens.shortcuts import MainShortcuts
from kivy_client.widgets.messages import SIDE_SPACE, HeightCache, MessageView, message_rows
from kivy_client.widgets.moderation import (
    ban_dialog,
    member_menu,
    move_dialog,
    timeout_dialog,
)
from kivy_client.widgets.panels import (
    ChannelRow,
    MemberList,
    MemberRow,
    SidebarList,
    VoiceParticipantRow,
)
from voicechat.sdk.app import AppSession, TimelineEntry
from voicechat.sdk.app.moderation import (
    ModerationAction,
    menu_items,
    timed_out_until,
    timeout_text,
)
from voicechat.sdk.app.view_rows import (
    first_text_channel,
    member_rows,
    sidebar_rows,
    typing_text,
    user_label,
)
from voicechat.sdk.models import Attachment, Message

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
    # Locked by a moderator (`voice.state` server_mute): the mute button cannot unmute.
    server_muted = BooleanProperty(False)
    # Why the composer is disabled (a timeout: "You can read but not send until HH:MM").
    send_blocked = StringProperty("")
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
        # The side panels redraw only what changed since they last drew.
        self.sidebar = SidebarList(
            self.ids.channel_list,
            self._on_channel_row,
            self._on_member_row,
        )
        self.member_list = MemberList(self.ids.member_list, self._on_member_row)
        self._timeout_end: Any = None
        self.shortcuts = MainShortcuts(self)
        Window.bind(on_key_down=self.shortcuts.key_down, on_key_up=self.shortcuts.key_up)
        self.bind(width=self._on_width)

    def reset(self) -> None:
        """Forget the channel shown and what was being composed (a new session starts)."""
        self.channel_id = self.channel_title = self.channel_topic = ""
        self.typing_text = ""
        self.ids.composer.text = ""
        self.cancel_compose_state()
        self.messages.pin_to_newest()
        self.messages.set_rows([])
        self.sidebar.clear()
        self.member_list.clear()

    @property
    def session(self) -> AppSession | None:
        """The app's session (set while this screen shows)."""
        return running_app().session

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
            first = first_text_channel(session.channels)
            if first is not None:
                self.select_channel(str(first.id))
                return
        if state == "online" and "state" in kinds:
            timeline = session.timeline(self.channel_id)
            if not timeline.loaded:
                # Opened while the server was unreachable: load it now that it answers.
                running_app().spawn(session.select_channel(self.channel_id), "load the channel")
        self._draw_me(session)
        self._draw_sidebar(session)
        self._draw_voice(session)
        self._draw_members(session)
        self._draw_typing(session)
        if "*" in kinds or not kinds <= _NOT_MESSAGES:
            self._draw_messages(session)

    def _draw_me(self, session: AppSession) -> None:
        me = session.me
        self.me_name = user_label(me) if me is not None else ""
        member = session.members.get(me.id) if me is not None and me.id is not None else None
        self.me_status = str(member.presence) if member is not None else "online"
        now = datetime.now(UTC)
        until = timed_out_until(me.communication_disabled_until if me else None, now)
        self.send_blocked = timeout_text(until) if until is not None else ""
        if self._timeout_end is not None:
            self._timeout_end.cancel()
            self._timeout_end = None
        if until is not None:  # enable the composer again when the timeout ends
            self._timeout_end = Clock.schedule_once(
                lambda _dt: self.refresh({"me"}), (until - now).total_seconds()
            )

    def _draw_sidebar(self, session: AppSession) -> None:
        voice = session.voice
        rows = sidebar_rows(
            session.channels,
            shown_channel=self.channel_id,
            voice_channel=str(voice.channel_id) if voice is not None else None,
            unread=session.conversations.unread_counts(),
            user=session.roster.user,
            title=session.channel_title,
        )
        self.sidebar.show(rows)

    def _draw_voice(self, session: AppSession) -> None:
        voice = session.voice
        self.in_voice = voice is not None
        self.server_muted = voice is not None and voice.server_muted
        if voice is None:
            self.voice_title, self.voice_quality = "", ""
            self._quality_poll.cancel()
            return
        channel = session.channels.get(voice.channel_id)
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

    def _draw_members(self, session: AppSession) -> None:
        self.member_list.show(member_rows(session.member_list()))

    def _draw_typing(self, session: AppSession) -> None:
        if not self.channel_id:
            self.typing_text = ""
            return
        users = session.timeline(self.channel_id).typing_users
        self.typing_text = typing_text([user_label(user) for user in users])

    def _draw_messages(self, session: AppSession) -> None:
        view = self.messages
        if not self.channel_id:
            view.set_rows([])
            return
        me = session.me
        rows = message_rows(
            session.timeline(self.channel_id),
            me.id if me is not None else None,
            self.heights,
            max(view.width - dp(SIDE_SPACE), dp(100)),
            title=self.channel_title,
            loading_older=self._loading_older,
        )
        view.set_rows(rows)

    def _on_width(self, _instance: Any, width: float) -> None:
        session = self.session
        if abs(width - self._width_seen) > 1 and session is not None:
            self._width_seen = width
            Clock.schedule_once(lambda _dt: self._draw_messages(session), 0)

    # -- channels -----------------------------------------------------------------------------

    def _live(self) -> AppSession:
        """The session, for actions that only run while it exists (from this screen's widgets)."""
        session = self.session
        if session is None:
            raise LookupError("no session: the main screen is not showing")
        return session

    def _on_channel_row(self, row: ChannelRow) -> None:
        if row.kind == "voice":
            self.join_voice(row.channel_id)
        else:
            self.select_channel(row.channel_id)

    def _on_member_row(self, row: MemberRow | VoiceParticipantRow) -> None:
        me = self._live().me
        if me is not None and str(me.id) == row.user_id:
            return
        self.open_member_menu(row.user_id, row.label)

    def open_member_menu(self, user_id: str, name: str) -> None:
        """A member's context menu: a message, and the moderation the user may do to them
        (with no moderation to offer, the click opens the DM at once)."""
        session = self._live()
        moderation = session.moderation
        spawn = running_app().spawn
        items: list[tuple[str, Callable[[], object]]] = [("Message", lambda: self.open_dm(user_id))]
        actions: dict[ModerationAction, Callable[[], object]] = {
            ModerationAction.BAN: lambda: ban_dialog(
                name,
                lambda seconds, reason: spawn(
                    moderation.ban(user_id, reason=reason, delete_message_seconds=seconds),
                    "ban",
                ),
            ),
            ModerationAction.TIMEOUT: lambda: timeout_dialog(
                name,
                lambda seconds, reason: spawn(
                    moderation.timeout(user_id, seconds, reason=reason), "timeout"
                ),
            ),
            ModerationAction.SERVER_MUTE: lambda: spawn(
                moderation.set_server_mute(user_id, True), "server mute"
            ),
            ModerationAction.SERVER_DEAFEN: lambda: spawn(
                moderation.set_server_deaf(user_id, True), "server deafen"
            ),
            ModerationAction.DISCONNECT: lambda: spawn(
                moderation.disconnect(user_id), "disconnect from voice"
            ),
            ModerationAction.MOVE: lambda: move_dialog(
                name,
                [
                    (channel.name, str(channel.id))
                    for group in session.channels.categories
                    for channel in group.channels
                    if channel.type == "voice"
                ],
                lambda channel_id: spawn(moderation.move(user_id, channel_id), "move"),
            ),
        }
        moderate = menu_items(moderation.actions_for(user_id))
        if not moderate:  # nothing to choose between: a click opens the DM
            self.open_dm(user_id)
            return
        for label, action in moderate:
            items.append((label, actions[action]))
        member_menu(name, items, danger=frozenset({"Ban…", "Timeout…"}))

    def open_dm(self, user_id: str) -> None:
        """Open (creating if needed) the direct messages with someone."""
        session = self._live()

        async def open_it() -> None:
            channel = await session.open_dm(user_id)
            if channel is not None:  # else the session reports why
                self.select_channel(str(channel.id))

        running_app().spawn(open_it(), "open the direct messages")

    def select_channel(self, channel_id: str) -> None:
        """Show a text channel or DM and load its latest messages."""
        session = self._live()
        channel = session.channels.get(UUID(channel_id))
        self.channel_id = channel_id
        if channel is not None:
            if channel.type == "dm":
                self.channel_title = session.channel_title(channel)
            else:
                self.channel_title = f"#{channel.name}"
            self.channel_topic = channel.topic or ""
        self.cancel_compose_state()
        self.messages.pin_to_newest()
        running_app().spawn(session.select_channel(channel_id), "open the channel")
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

        running_app().spawn(load(), "load older messages")

    # -- composer -----------------------------------------------------------------------------

    def on_composer_text(self, text: str) -> None:
        """Tell the others we are typing (the session sends it at most every few seconds)."""
        if text and self.channel_id and self.editing is None:
            running_app().spawn(self._live().typing(self.channel_id), "send typing")

    def send(self) -> None:
        """Send (or save an edit of) what is in the composer."""
        composer = self.ids.composer
        text = composer.text.strip()
        session, app = self.session, running_app()
        if not self.channel_id or session is None:
            return
        if self.editing is not None:
            if text:
                app.spawn(session.edit(self.editing, text), "edit the message")
            composer.text = ""
            self.cancel_compose_state()
            return
        files: list[Path | str] = [Path(p) for p in self.pending_files]
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
        who = user_label(message.author) if message is not None else "a message"
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

        session = self._live()

        def delete() -> None:
            running_app().spawn(session.delete(message_id), "delete the message")

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

    def download(self, attachment: Attachment) -> None:
        """Save an attachment into the downloads folder, then say where."""
        app, session = running_app(), self._live()
        folder = Path(app.settings.download_dir or Path.home() / "Downloads")

        async def save() -> None:
            path = await session.download(attachment, folder)
            if path is not None:  # else the session reports why, as an error change
                app.toast(f"Saved {path.name} to {path.parent}")

        app.spawn(save(), f"download {attachment.filename}")

    def edit_last_own(self) -> bool:
        """Up arrow in an empty composer edits one's last message (as in Discord)."""
        session = self.session
        if session is None or session.me is None or not self.channel_id:
            return False
        for message in reversed(session.timeline(self.channel_id).messages):  # sent ones
            if message.author.id == session.me.id:
                self.start_edit(str(message.id))
                return True
        return False

    def _entry(self, message_id: str) -> TimelineEntry | None:
        for entry in self._live().timeline(self.channel_id).entries:
            if str(entry.id) == message_id:
                return entry
        return None

    def retry(self, message_id: str) -> None:
        """Send a refused message again."""
        entry = self._entry(message_id)
        if entry is not None:
            running_app().spawn(self._live().retry(entry), "send the message")

    def discard(self, message_id: str) -> None:
        """Drop a refused (or still waiting) message."""
        entry = self._entry(message_id)
        if entry is not None:
            self._live().discard(entry)

    def _message(self, message_id: str) -> Message | None:
        return self._live().timeline(self.channel_id).get(UUID(message_id))

    # -- voice --------------------------------------------------------------------------------

    def join_voice(self, channel_id: str) -> None:
        """Join a voice channel (leaving the current one)."""
        running_app().spawn(self._live().join_voice(channel_id), "join the voice channel")

    def leave_voice(self) -> None:
        """Leave the voice channel."""
        running_app().spawn(self._live().leave_voice(), "leave the voice channel")

    def toggle_mute(self) -> None:
        """Mute or unmute the microphone."""
        running_app().spawn(self._live().set_muted(not self.self_muted), "change mute")

    def toggle_deafen(self) -> None:
        """Deafen (hear nobody, and be muted) or undeafen."""
        running_app().spawn(self._live().set_deafened(not self.self_deafened), "change deafen")

    def open_settings(self) -> None:
        """Show the settings screen."""
        running_app().show_screen("settings")
