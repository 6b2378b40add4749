"""`AppSession`: the desktop client's application model, without a window.

One session per logged-in server. It composes focused parts and keeps only the session's
lifecycle (start, catching up, close) itself:

- :class:`~voicechat.sdk.app.signin.SignIn`: password, registration, MFA, SSO, resume;
- :class:`~voicechat.sdk.app.roster.Roster`: the signed-in user and the members;
- :class:`~voicechat.sdk.app.conversations.Conversations`: timelines and chat actions;
- :class:`~voicechat.sdk.app.outbox.Outbox`: messages the server does not have yet;
- :class:`~voicechat.sdk.app.voice_controller.VoiceController`: the call and voice rooms;
- :class:`~voicechat.sdk.app.encryption.Encryption`: end-to-end encryption;
- :class:`~voicechat.sdk.app.event_applier.EventApplier`: gateway events, by name.

User actions are coroutines; those that can fail because of the server or the network (send,
edit, delete, download, voice) never raise for it: they set :attr:`AppSession.error` to a
sentence, emit a `Change("error")` and return a falsy value. Logging in (the class methods)
raises, and :func:`~voicechat.sdk.app.readable_error` turns what it raises into a sentence.

Everything runs on one asyncio loop (the GUI's); listeners are called synchronously.
"""

from __future__ import annotations

import contextlib
import logging
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from voicechat.error_codes import ErrorCode
from voicechat.sdk.app.conversations import Conversations
from voicechat.sdk.app.encryption import Encryption
from voicechat.sdk.app.engines import DeviceEngineFactory, EngineFactory, VoiceEngineLike
from voicechat.sdk.app.event_applier import EventApplier
from voicechat.sdk.app.feed import NETWORK_ERRORS, Background, ChangeFeed
from voicechat.sdk.app.moderation import BANNED_TEXT, MemberModeration
from voicechat.sdk.app.outbox import Outbox
from voicechat.sdk.app.roster import Roster
from voicechat.sdk.app.server_link import ServerLink
from voicechat.sdk.app.settings import AudioSettings, ClientSettings, account_file
from voicechat.sdk.app.signin import MfaChallenge, Provider, SignIn, TwoFactor, sso_providers
from voicechat.sdk.app.state import (
    Change,
    ChannelTree,
    ConnectionState,
    Listener,
    Member,
    Presence,
    VoiceState,
)
from voicechat.sdk.app.timeline import Timeline, TimelineEntry
from voicechat.sdk.app.tokens import TokenStore
from voicechat.sdk.app.voice_controller import VoiceController
from voicechat.sdk.client import Client
from voicechat.sdk.crypto import CryptoStore, TrustEvent, keyring_available
from voicechat.sdk.errors import ApiError
from voicechat.sdk.models import Attachment, Channel, Me

log = logging.getLogger(__name__)


class AppSession:
    """A logged-in desktop client: state for the GUI and the actions it forwards.

    Made by :meth:`login`, :meth:`complete_mfa`, :meth:`register`, :meth:`sso` or
    :meth:`resume`, which return it started.
    """

    def __init__(
        self,
        client: Client,
        settings: ClientSettings,
        *,
        tokens: TokenStore | None = None,
        engine_factory: EngineFactory | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.sign_in = SignIn.of(settings, tokens, engine_factory)
        self.tokens = self.sign_in.tokens
        self.engine_factory: EngineFactory = engine_factory or DeviceEngineFactory()
        self.server_url = client.base_url
        parts = compose(client, settings, self.sign_in, self.engine_factory)
        self.feed, self.background, self.link = parts.feed, parts.background, parts.link
        self.channels, self.roster, self.conversations = (
            parts.channels,
            parts.roster,
            parts.conversations,
        )
        self.outbox, self.calls, self.events = parts.outbox, parts.calls, parts.events
        self.encryption, self.two_factor = parts.encryption, parts.two_factor
        # Who is in which voice channel (all channels), shared with the channel tree.
        self.voice_rooms = self.channels.voice_rooms
        # What the signed-in user may do to others (the members' context menus).
        self.moderation = MemberModeration(
            client,
            self.feed,
            lambda: self.me.roles if self.me is not None else [],
            lambda user_id: any(user_id in room for room in self.voice_rooms.values()),
        )
        self._closed = False
        client.on_tokens = lambda: self.sign_in.keep_tokens(client)

    # -- making a session -------------------------------------------------------------------

    @classmethod
    async def login(
        cls,
        server_url: str,
        username: str,
        password: str,
        *,
        settings: ClientSettings,
        tokens: TokenStore | None = None,
        engine_factory: EngineFactory | None = None,
    ) -> AppSession:
        """Log in with a password.

        Raises:
            MfaRequired: the account has two-factor authentication on; its `challenge` goes to
                :meth:`complete_mfa` with a code.
            ApiError, httpx.HTTPError: wrong password, rate limited, unreachable server...
                (:func:`readable_error` says which).
        """
        sign_in = SignIn.of(settings, tokens, engine_factory)
        return await cls._open(await sign_in.password(server_url, username, password), sign_in)

    @classmethod
    async def complete_mfa(cls, challenge: MfaChallenge, code: str) -> AppSession:
        """Finish a login that raised :class:`MfaRequired`.

        Raises:
            AuthError: a wrong or spent code (the challenge stays usable for another try,
                until the server's attempts run out).
        """
        await challenge.verify(code)
        return await cls._open(challenge.client, challenge.sign_in)

    @classmethod
    async def register(
        cls,
        server_url: str,
        username: str,
        password: str,
        *,
        settings: ClientSettings,
        display_name: str | None = None,
        tokens: TokenStore | None = None,
        engine_factory: EngineFactory | None = None,
    ) -> AppSession:
        """Create an account and log in as it."""
        sign_in = SignIn.of(settings, tokens, engine_factory)
        client = await sign_in.register(server_url, username, password, display_name)
        return await cls._open(client, sign_in)

    @classmethod
    async def sso(
        cls,
        server_url: str,
        provider: str,
        *,
        settings: ClientSettings,
        open_browser: Callable[[str], object] = webbrowser.open,
        timeout: float = 300.0,
        tokens: TokenStore | None = None,
        engine_factory: EngineFactory | None = None,
    ) -> AppSession:
        """Log in through a single sign-on provider in the system browser.

        A listener on 127.0.0.1 (a port the OS picks) receives the server's redirect with a
        one-time `login_code`, which is exchanged for tokens.

        Raises:
            SsoError: the login was refused or not completed within `timeout` seconds.
            ApiError, httpx.HTTPError: as for :meth:`login`.
        """
        sign_in = SignIn.of(settings, tokens, engine_factory)
        client = await sign_in.sso(server_url, provider, open_browser, timeout)
        return await cls._open(client, sign_in)

    @staticmethod
    async def sso_providers(server_url: str) -> list[Provider]:
        """The single sign-on providers a server offers (for the Login screen's buttons)."""
        return await sso_providers(server_url)

    @classmethod
    async def resume(
        cls,
        settings: ClientSettings,
        *,
        tokens: TokenStore | None = None,
        engine_factory: EngineFactory | None = None,
    ) -> AppSession | None:
        """The session stored for `settings.server_url`, or None (then show Login).

        An expired access token is refreshed silently. When the server cannot be reached the
        session still opens (state `connecting`, with the stored identity) and catches up
        once it can; when the server says the session has ended, the stored tokens are
        removed and None is returned.
        """
        sign_in = SignIn.of(settings, tokens, engine_factory)
        client = await sign_in.resume()
        return None if client is None else await cls._open(client, sign_in)

    @classmethod
    async def _open(cls, client: Client, sign_in: SignIn) -> AppSession:
        """The one way a signed-in client becomes a started session."""
        session = cls(
            client, sign_in.settings, tokens=sign_in.tokens, engine_factory=sign_in.engine_factory
        )
        sign_in.keep_tokens(client)
        session.outbox.load()
        sign_in.remember_account(client)
        await session.start()
        if keyring_available() and session.me is not None:
            await session.enable_encryption()
        return session

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load channels and members, and start following the gateway (idempotent).

        When the server cannot be reached the session stays `connecting` and loads
        everything once the gateway gets through.
        """
        await self.link.start()
        self.background.spawn(self.moderation.load_roles())

    async def close(self) -> None:
        """Leave voice, disconnect and stop (the stored tokens stay for :meth:`resume`)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self.calls.leave()
        self.outbox.close()
        for timeline in self.conversations:
            timeline.close()
        await self.link.stop()
        await self.background.cancel_all()
        await self.client.close()
        self.link.set_state("offline")

    async def ended_reason(self) -> str | None:
        """After a `session_ended` change: what to tell the person on the login screen.

        A ban closes the socket like any ended session (4003); the refresh token then
        answers 403 `banned`, and the person reads that they were banned rather than that
        their session ended.
        """
        try:
            await self.client.refresh()
        except ApiError as exc:
            if exc.code == ErrorCode.BANNED:
                self.feed.report(BANNED_TEXT)
        except (TimeoutError, RuntimeError, *NETWORK_ERRORS):
            pass  # RuntimeError: the client was closed already
        return self.error

    async def logout(self) -> None:
        """End the session on the server, forget its tokens here, and close."""
        try:
            await self.client.logout()
        except (ApiError, *NETWORK_ERRORS):
            # Offline or already ended: forgetting the tokens here is what matters.
            log.info("logout: the server could not be told", exc_info=True)
        self.tokens.delete(self.server_url)
        await self.close()
        self.feed.notify(Change("session_ended"))

    # -- state the GUI reads ----------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The connection to the server: offline, connecting, online or reconnecting."""
        return self.link.state

    @property
    def me(self) -> Me | None:
        """The signed-in user's profile."""
        return self.roster.me

    @property
    def members(self) -> dict[UUID, Member]:
        """Every member by id, with presence."""
        return self.roster.members

    @property
    def voice(self) -> VoiceState | None:
        """The call the user is in."""
        return self.calls.voice

    @property
    def selected_channel(self) -> UUID | None:
        """The channel on screen."""
        return self.conversations.selected_channel

    @property
    def error(self) -> str | None:
        """The last failure as a sentence, until :meth:`clear_error`."""
        return self.feed.error

    @property
    def trust_events(self) -> list[TrustEvent]:
        """Devices seen, changed or forged (end-to-end encryption), for the GUI to show."""
        return self.encryption.trust_events

    @property
    def outbox_size(self) -> int:
        """Messages not yet accepted by the server (refused ones included)."""
        return len(self.outbox)

    @property
    def voice_engine(self) -> VoiceEngineLike | None:
        """The running audio engine (for its `input_level` meter), None outside a call."""
        return self.calls.engine

    @property
    def encryption_enabled(self) -> bool:
        """Whether this session encrypts and decrypts (DMs and encrypted channels)."""
        return self.encryption.enabled

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(change)` after every change; returns a function that unsubscribes.

        Listeners run synchronously on the session's loop: schedule redraws, do not block.
        """
        return self.feed.subscribe(listener)

    def clear_error(self) -> None:
        """The person has seen the error."""
        self.feed.clear_error()

    def timeline(self, channel_id: UUID | str) -> Timeline:
        """The timeline of a channel (see :meth:`Conversations.timeline`)."""
        return self.conversations.timeline(channel_id)

    def member_list(self) -> list[Member]:
        """Members for the user list: online first, by name."""
        return self.roster.sorted()

    def channel_title(self, channel: Channel) -> str:
        """What to call a channel: its name, or for a DM the other members' names."""
        return self.conversations.channel_title(channel)

    # -- actions (each part's docstring says more) -------------------------------------------

    async def select_channel(self, channel_id: UUID | str) -> Timeline:
        """Show a channel: its timeline, loaded with the newest page if it was not yet."""
        return await self.conversations.select_channel(channel_id)

    async def load_older(self, channel_id: UUID | str) -> int:
        """Scrolling up: the page before the oldest loaded message (0: none, or it failed)."""
        return await self.conversations.load_older(channel_id)

    async def send(
        self,
        channel_id: UUID | str,
        text: str,
        *,
        reply_to: UUID | str | None = None,
        attachments: list[Path | str] | None = None,
    ) -> TimelineEntry:
        """Send a message through the outbox (see :meth:`Outbox.send`)."""
        return await self.outbox.send(channel_id, text, reply_to=reply_to, attachments=attachments)

    def discard(self, entry: TimelineEntry) -> None:
        """Drop a pending or refused message from the outbox."""
        self.outbox.discard(entry)

    async def retry(self, entry: TimelineEntry) -> None:
        """Try a refused message again."""
        await self.outbox.retry(entry)

    async def edit(self, message_id: UUID | str, text: str) -> bool:
        """Change the text of one of your messages; False (and :attr:`error`) if refused."""
        return await self.conversations.edit(message_id, text)

    async def delete(self, message_id: UUID | str) -> bool:
        """Delete a message (yours, or any with manage_messages); False if refused."""
        return await self.conversations.delete(message_id)

    async def download(self, attachment: Attachment, dest_dir: Path | str) -> Path | None:
        """Save an attachment into `dest_dir` under its own (sanitised, de-duplicated) name."""
        return await self.conversations.download(attachment, dest_dir)

    async def typing(self, channel_id: UUID | str) -> None:
        """The user is typing in a channel (call on every key press; throttled here)."""
        await self.conversations.typing(channel_id)

    async def open_dm(self, *user_ids: UUID | str) -> Channel | None:
        """The DM with these users (made if needed), in the channel tree."""
        return await self.conversations.open_dm(*user_ids)

    async def set_presence(self, status: Presence) -> bool:
        """Online, idle, do not disturb, or invisible (`offline`)."""
        return await self.roster.set_presence(status)

    async def join_voice(self, channel_id: UUID | str) -> bool:
        """Join a voice channel (leaving the current one) and start the audio engine."""
        return await self.calls.join(channel_id)

    async def leave_voice(self) -> None:
        """Leave the voice channel."""
        await self.calls.leave()

    async def set_muted(self, muted: bool) -> bool:
        """Stop (or resume) sending your voice; the others see you muted."""
        return await self.calls.set_muted(muted)

    async def set_deafened(self, deafened: bool) -> bool:
        """Hear nothing (and be muted); undeafening restores the mute state from before."""
        return await self.calls.set_deafened(deafened)

    def push_to_talk(self, pressed: bool) -> None:
        """The push-to-talk key went down (True) or up (False)."""
        self.calls.push_to_talk(pressed)

    def set_user_volume(self, user_id: UUID | str, volume: float) -> None:
        """How loud one person plays here, 0.0 to 2.0 (kept in the settings)."""
        self.calls.set_user_volume(user_id, volume)

    async def apply_audio(self, audio: AudioSettings) -> bool:
        """New audio settings: saved, and applied to a running call (False: not usable)."""
        return await self.calls.apply_audio(audio)

    def voice_stats(self) -> dict[str, Any]:
        """The engine's figures and `quality` (empty outside a call); poll it."""
        return self.calls.stats()

    def key_store_path(self) -> Path:
        """Where this account's encryption keys live on this machine."""
        return self.encryption.key_store_path()

    async def enable_encryption(self, store: CryptoStore | None = None) -> bool:
        """Make this installation an encryption device (see :meth:`Encryption.enable`); without
        an OS keyring, pass e.g. `PassphraseStore(session.key_store_path(), passphrase)`."""
        return await self.encryption.enable(store)

    async def mfa_setup(self) -> tuple[str, str]:
        """Start two-factor set-up: `(otpauth_uri, secret)`."""
        return await self.two_factor.setup()

    async def mfa_enable(self, code: str) -> list[str]:
        """Confirm the set-up with a code; returns the backup codes (show them once)."""
        return await self.two_factor.enable(code)

    async def mfa_disable(self, code: str) -> None:
        """Turn two-factor authentication off (a current code or a backup code)."""
        await self.two_factor.disable(code)


@dataclass(frozen=True, slots=True)
class SessionParts:
    """The parts of one session, wired to each other (see :func:`compose`)."""

    feed: ChangeFeed
    background: Background
    channels: ChannelTree
    roster: Roster
    outbox: Outbox
    conversations: Conversations
    calls: VoiceController
    encryption: Encryption
    two_factor: TwoFactor
    events: EventApplier
    link: ServerLink


def compose(
    client: Client, settings: ClientSettings, sign_in: SignIn, engine_factory: EngineFactory
) -> SessionParts:
    """Make the parts of a session for `client` and wire each to what it needs of the others.

    A part that needs one made after it gets a callable; it is only called once all exist.
    """
    feed = ChangeFeed(client.base_url)
    background = Background(feed)
    channels = ChannelTree()
    roster = Roster(client, feed, background)

    def online() -> bool:
        return link.online

    def outbox_path() -> Path | None:
        me = roster.me
        if me is None or not me.username:
            return None
        return account_file(settings.home, "outbox", client.base_url, me.username, ".json")

    def ended_by_server() -> None:
        sign_in.tokens.delete(client.base_url)
        feed.notify(Change("session_ended"))

    outbox = Outbox(
        client,
        feed,
        background,
        path=outbox_path,
        me=lambda: roster.me,
        timeline=lambda channel_id: conversations.existing(channel_id),
        online=online,
    )
    conversations = Conversations(
        client,
        feed,
        channels,
        roster,
        pending=outbox.pending_entries,
        delivered=outbox.forget_delivered,
        online=online,
    )
    roster.on_learned = conversations.typing_changed_for
    calls = VoiceController(
        client, settings, engine_factory, feed, channels.voice_rooms, roster, online=online
    )
    encryption = Encryption(
        client,
        settings.home,
        feed,
        background,
        me=lambda: roster.me,
        timelines=lambda: [(t, channels.get(t.channel_id)) for t in conversations],
    )
    events = EventApplier(
        client,
        feed,
        background,
        channels=channels,
        roster=roster,
        conversations=conversations,
        voice=calls,
        delivered=outbox.forget_delivered,
        reconnected=lambda: link.resync(),
        session_ended=lambda: link.ended(),
    )
    link = ServerLink(
        client,
        feed,
        background,
        channels=channels,
        roster=roster,
        conversations=conversations,
        calls=calls,
        outbox=outbox,
        events=events,
        on_ended=ended_by_server,
    )
    return SessionParts(
        feed,
        background,
        channels,
        roster,
        outbox,
        conversations,
        calls,
        encryption,
        TwoFactor(client, roster, feed),
        events,
        link,
    )
