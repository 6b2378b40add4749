"""`AppSession`: the desktop client's whole application model, without a window.

One session per logged-in server. It owns an SDK :class:`~voicechat.sdk.client.Client`, reads
the gateway's events in one task and keeps the state the GUI draws (channel tree, members,
timelines, typing, voice, connection state) current. User actions are coroutines; those that
can fail because of the server or the network (send, edit, delete, download, voice) never
raise for it: they set :attr:`AppSession.error` to a sentence, emit a `Change("error")` and
return a falsy value. Logging in (the class methods) raises, and
:func:`~voicechat.sdk.app.readable_error` turns what it raises into a sentence.

Everything runs on one asyncio loop (the GUI's); listeners are called synchronously.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
import uuid
import webbrowser
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import websockets

from voicechat.sdk.app.readable import readable_error
from voicechat.sdk.app.settings import AudioSettings, ClientSettings, write_private
from voicechat.sdk.app.sso import LoopbackRedirect
from voicechat.sdk.app.state import (
    Change,
    ChannelTree,
    ConnectionState,
    Listener,
    Member,
    OutgoingMessage,
    Presence,
    Timeline,
    TimelineEntry,
    VoiceParticipant,
    VoiceState,
    sorted_members,
)
from voicechat.sdk.app.tokens import StoredTokens, TokenStore
from voicechat.sdk.app.voice import DeviceEngineFactory, EngineFactory, VoiceEngineLike
from voicechat.sdk.client import Client, MfaSetup
from voicechat.sdk.crypto import (
    CryptoError,
    CryptoStore,
    KeyringStore,
    StoreError,
    TrustEvent,
    keyring_available,
)
from voicechat.sdk.errors import ApiError, AuthError
from voicechat.sdk.errors import MfaRequired as SdkMfaRequired
from voicechat.sdk.gateway import GatewayEvent, GatewayState
from voicechat.sdk.models import Attachment, Channel, Me, Message, User
from voicechat.sdk.models import VoiceState as CallMember
from voicechat.sdk.voice import VoiceCall

log = logging.getLogger(__name__)

USER_AGENT = "voicechat-desktop"
# Resend typing.start at most this often while the user keeps typing (the server's indicator
# lasts 8 s).
TYPING_RESEND_SECONDS = 5.0
# While messages wait in the outbox and the gateway looks connected, retry this often.
OUTBOX_RETRY_SECONDS = 5.0

# Network failures: the message stays in the outbox and goes out after the next reconnect.
_NETWORK_ERRORS = (httpx.TransportError, ConnectionError, OSError, websockets.ConnectionClosed)

# An attachment that cannot be read: the message is refused here, not retried.
_LOCAL_FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError)

_GATEWAY_STATES: dict[GatewayState, ConnectionState] = {
    "connecting": "connecting",
    "online": "online",
    "reconnecting": "reconnecting",
    "closed": "offline",
}


@dataclass(slots=True)
class MfaChallenge:
    """A password login waiting for its second factor; pass to :meth:`AppSession.complete_mfa`.

    Call :meth:`cancel` when the person gives up, to close its connections.
    """

    client: Client
    username: str
    settings: ClientSettings
    tokens: TokenStore | None
    engine_factory: EngineFactory | None

    async def cancel(self) -> None:
        """Abandon the login."""
        await self.client.close()


@dataclass(frozen=True, slots=True)
class Provider:
    """A single sign-on provider: `id` goes to :meth:`AppSession.sso`, `name` on the button."""

    id: str
    name: str


class MfaRequired(SdkMfaRequired):
    """The password was right; ask for a code and call :meth:`AppSession.complete_mfa`."""

    def __init__(self, challenge: MfaChallenge, mfa_token: str) -> None:
        super().__init__(mfa_token)
        self.challenge = challenge


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
        self.tokens = tokens if tokens is not None else TokenStore(settings.home)
        self.engine_factory: EngineFactory = engine_factory or DeviceEngineFactory()
        self.server_url = client.base_url
        self.state: ConnectionState = "connecting"
        self.me: Me | None = client.user
        self.channels = ChannelTree()
        self.members: dict[UUID, Member] = {}
        self.voice: VoiceState | None = None
        # Who is in which voice channel (all channels), shared with the channel tree.
        self.voice_rooms = self.channels.voice_rooms
        self.selected_channel: UUID | None = None
        self.error: str | None = None
        self._timelines: dict[UUID, Timeline] = {}
        self._outbox: list[OutgoingMessage] = []
        self._outbox_lock = asyncio.Lock()
        self._outbox_retry: asyncio.TimerHandle | None = None
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pump_task: asyncio.Task[None] | None = None
        self._unsubscribe_gateway: Callable[[], None] | None = None
        self._started = False
        self._closed = False
        self._synced = False
        self._last_typing: dict[UUID, float] = {}
        self._learning: set[UUID] = set()
        self._call: VoiceCall | None = None
        self._engine: VoiceEngineLike | None = None
        self._muted_before_deafen = False
        self._voice_lock = asyncio.Lock()
        # Devices seen, changed or forged (end-to-end encryption), for the GUI to show.
        self.trust_events: list[TrustEvent] = []
        client.on_tokens = self._store_tokens

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
        client = Client(server_url, user_agent=USER_AGENT)
        try:
            await client.login(username, password)
        except SdkMfaRequired as needed:
            challenge = MfaChallenge(client, username, settings, tokens, engine_factory)
            raise MfaRequired(challenge, needed.mfa_token) from None
        except BaseException:
            await client.close()
            raise
        return await cls._open(client, settings, tokens, engine_factory)

    @classmethod
    async def complete_mfa(cls, challenge: MfaChallenge, code: str) -> AppSession:
        """Finish a login that raised :class:`MfaRequired`.

        Raises:
            AuthError: a wrong or spent code (the challenge stays usable for another try,
                until the server's attempts run out).
        """
        await challenge.client.verify_mfa(code.strip().replace(" ", ""))
        return await cls._open(
            challenge.client, challenge.settings, challenge.tokens, challenge.engine_factory
        )

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
        client = Client(server_url, user_agent=USER_AGENT)
        try:
            await client.register(username, password, display_name=display_name)
        except BaseException:
            await client.close()
            raise
        return await cls._open(client, settings, tokens, engine_factory)

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
        client = Client(server_url, user_agent=USER_AGENT)
        try:
            async with LoopbackRedirect() as redirect:
                url = await client.sso_start(provider, redirect.redirect_uri)
                if inspect.iscoroutinefunction(open_browser):
                    await open_browser(url)
                else:
                    # webbrowser.open may wait for the browser process to start.
                    await asyncio.to_thread(open_browser, url)
                code = await redirect.login_code(timeout)
            await client.sso_exchange(code)
        except BaseException:
            await client.close()
            raise
        return await cls._open(client, settings, tokens, engine_factory)

    @staticmethod
    async def sso_providers(server_url: str) -> list[Provider]:
        """The single sign-on providers a server offers (for the Login screen's buttons).

        Raises:
            ApiError, httpx.HTTPError: see :func:`readable_error`.
        """
        async with Client(server_url, user_agent=USER_AGENT) as client:
            return [Provider(p["id"], p["name"]) for p in await client.providers()]

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
        store = tokens if tokens is not None else TokenStore(settings.home)
        stored = store.load(settings.server_url)
        if stored is None:
            return None
        client = Client(settings.server_url, user_agent=USER_AGENT)
        client.use_tokens(stored.access_token, stored.refresh_token)
        try:
            await client.me()
        except AuthError:
            store.delete(settings.server_url)
            await client.close()
            return None
        except _NETWORK_ERRORS:
            if stored.user_id is not None:
                client.user = Me(
                    id=UUID(stored.user_id), username=stored.username or "", status="online"
                )
        except BaseException:
            await client.close()
            raise
        return await cls._open(client, settings, store, engine_factory)

    @classmethod
    async def _open(
        cls,
        client: Client,
        settings: ClientSettings,
        tokens: TokenStore | None,
        engine_factory: EngineFactory | None,
    ) -> AppSession:
        session = cls(client, settings, tokens=tokens, engine_factory=engine_factory)
        session._store_tokens()
        session._load_outbox()
        if client.user is not None and client.user.username:
            settings.server_url = client.base_url
            settings.username = client.user.username
            settings.save()
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
        if self._started:
            return
        self._started = True
        gateway = self.client.gateway
        self._unsubscribe_gateway = gateway.on_state(self._on_gateway_state)
        self._pump_task = asyncio.create_task(self._pump(), name="voicechat-app-events")
        try:
            await self._sync()
        except _NETWORK_ERRORS as exc:
            self._set_error(exc)

    async def close(self) -> None:
        """Leave voice, disconnect and stop (the stored tokens stay for :meth:`resume`)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self.leave_voice()
        if self._outbox_retry is not None:
            self._outbox_retry.cancel()
        if self._unsubscribe_gateway is not None:
            self._unsubscribe_gateway()
        for timeline in self._timelines.values():
            timeline.close()
        tasks = [t for t in (self._pump_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.close()
        self._set_state("offline")

    async def logout(self) -> None:
        """End the session on the server, forget its tokens here, and close."""
        try:
            await self.client.logout()
        except (ApiError, *_NETWORK_ERRORS):
            # Offline or already ended: forgetting the tokens here is what matters.
            log.info("logout: the server could not be told", exc_info=True)
        self.tokens.delete(self.server_url)
        await self.close()
        self.notify(Change("session_ended"))

    # -- change notifications ---------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(change)` after every change; returns a function that unsubscribes.

        Listeners run synchronously on the session's loop: schedule redraws, do not block.
        """
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def notify(self, change: Change) -> None:
        """Tell every listener (a failing listener is logged, not propagated)."""
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("change listener failed on %s", change.kind)

    def clear_error(self) -> None:
        """The person has seen the error."""
        self.error = None
        self.notify(Change("error", payload=None))

    def _set_error(self, exc: BaseException | str) -> str:
        text = exc if isinstance(exc, str) else readable_error(exc, server_url=self.server_url)
        self.error = text
        self.notify(Change("error", payload=text))
        return text

    def _set_state(self, state: ConnectionState) -> None:
        if state != self.state:
            self.state = state
            self.notify(Change("state", payload=state))

    # -- reading state ----------------------------------------------------------------------

    def timeline(self, channel_id: UUID | str) -> Timeline:
        """The timeline of a channel (empty until :meth:`select_channel` or
        `timeline.load_latest()` loads it)."""
        key = channel_id if isinstance(channel_id, UUID) else UUID(channel_id)
        timeline = self._timelines.get(key)
        if timeline is None:
            timeline = self._timelines[key] = Timeline(self, key)
        return timeline

    def member_list(self) -> list[Member]:
        """Members for the user list: online first, by name."""
        return sorted_members(self.members)

    def channel_title(self, channel: Channel) -> str:
        """What to call a channel: its name, or for a DM the other members' names."""
        if channel.type != "dm":
            return channel.name
        me = self.me.id if self.me else None
        others = [u.name for u in channel.members or [] if u.id != me]
        return ", ".join(sorted(others)) or channel.name

    def pending_entries(self, channel_id: UUID) -> list[TimelineEntry]:
        """Messages of this channel still in the outbox, as timeline entries."""
        return [
            TimelineEntry(self._stand_in(item), pending=item.error is None, error=item.error)
            for item in self._outbox
            if item.channel_id == channel_id
        ]

    def note_authors(self, messages: list[Message]) -> None:
        """Count the authors of loaded messages as members (someone who joined after the
        member list was loaded)."""
        added = False
        for message in messages:
            author = message.author
            if author.id is not None and author.id not in self.members:
                self._set_member(author, author.status)
                added = True
        if added:
            self.notify(Change("members"))

    def forget_delivered(self, messages: list[Message]) -> None:
        """Drop outbox entries the server already has (seen in a page or an event)."""
        mine = self.me.id if self.me else None
        nonces = {m.nonce for m in messages if m.nonce and m.author.id == mine}
        if nonces and any(item.nonce in nonces for item in self._outbox):
            self._outbox = [item for item in self._outbox if item.nonce not in nonces]
            self._save_outbox()

    def _stand_in(self, item: OutgoingMessage) -> Message:
        author = self.me or User(id=None, username="me")
        return Message(
            id=item.local_id,
            channel_id=item.channel_id,
            author=User(**author.model_dump(include={"id", "username", "display_name"})),
            content=item.content,
            nonce=item.nonce,
            reply_to=item.reply_to,
            created_at=item.created_at,
        )

    # -- chat -------------------------------------------------------------------------------

    async def select_channel(self, channel_id: UUID | str) -> Timeline:
        """Show a channel: its timeline, loaded with the newest page if it was not yet."""
        timeline = self.timeline(channel_id)
        self.selected_channel = timeline.channel_id
        timeline.unread = 0
        if not timeline.loaded:
            try:
                await timeline.load_latest()
            except (ApiError, *_NETWORK_ERRORS) as exc:
                self._set_error(exc)
        self.notify(Change("selected", timeline.channel_id))
        return timeline

    async def load_older(self, channel_id: UUID | str) -> int:
        """Scrolling up: the page before the oldest loaded message (0 when none is left or
        it failed; see :attr:`error`)."""
        try:
            return await self.timeline(channel_id).load_older()
        except (ApiError, *_NETWORK_ERRORS) as exc:
            self._set_error(exc)
            return 0

    async def send(
        self,
        channel_id: UUID | str,
        text: str,
        *,
        reply_to: UUID | str | None = None,
        attachments: list[Path | str] | None = None,
    ) -> TimelineEntry:
        """Send a message (attachments are uploaded first).

        It shows at once as a pending entry. While the server cannot be reached it waits in
        the outbox with its nonce and goes out, exactly once, after the reconnect. A refusal
        (no permission, too long...) marks the entry with a readable `error` and sets
        :attr:`error`.
        """
        item = OutgoingMessage(
            nonce=uuid.uuid4().hex,
            channel_id=UUID(str(channel_id)),
            content=text,
            reply_to=UUID(str(reply_to)) if reply_to is not None else None,
            paths=[Path(p) for p in attachments or []],
            created_at=datetime.now(UTC),
            local_id=uuid.uuid4(),
        )
        self._outbox.append(item)
        self._save_outbox()
        self.notify(Change("timeline", item.channel_id))
        await self.flush_outbox()
        for entry in self.timeline(item.channel_id).entries:
            if entry.nonce == item.nonce:
                return entry
        return TimelineEntry(self._stand_in(item), pending=False, error=item.error)

    def discard(self, entry: TimelineEntry) -> None:
        """Drop a pending or refused message from the outbox."""
        before = len(self._outbox)
        self._outbox = [i for i in self._outbox if i.nonce != entry.nonce]
        if len(self._outbox) != before:
            self._save_outbox()
            self.notify(Change("timeline", entry.message.channel_id))

    async def retry(self, entry: TimelineEntry) -> None:
        """Try a refused message again."""
        for item in self._outbox:
            if item.nonce == entry.nonce:
                item.error = None
        await self.flush_outbox()

    @property
    def outbox_size(self) -> int:
        """Messages not yet accepted by the server (refused ones included)."""
        return len(self._outbox)

    async def flush_outbox(self) -> None:
        """Send what waits in the outbox, in order; stops at the first network failure."""
        async with self._outbox_lock:
            try:
                await self._flush()
            finally:
                self._save_outbox()

    async def _flush(self) -> None:
        for item in list(self._outbox):
            if item.error is not None or item not in self._outbox:
                continue
            try:
                message = await self._deliver(item)
            except _LOCAL_FILE_ERRORS as exc:
                item.error = self._set_error(exc)
                self.notify(Change("timeline", item.channel_id))
                continue
            except _NETWORK_ERRORS as exc:
                log.info("outbox: server unreachable (%s); %d waiting", exc, len(self._outbox))
                self._schedule_outbox_retry()
                return
            except (ApiError, CryptoError, ValueError) as exc:
                item.error = self._set_error(exc)
                self.notify(Change("timeline", item.channel_id))
                continue
            with contextlib.suppress(ValueError):
                self._outbox.remove(item)
            timeline = self._timelines.get(item.channel_id)
            if timeline is not None:
                timeline.add(message)
            self.notify(Change("timeline", item.channel_id))

    async def _deliver(self, item: OutgoingMessage) -> Message:
        if item.file_ids is None:
            uploaded = []
            for path in item.paths:
                answer = await self.client.upload(path, channel_id=item.channel_id)
                uploaded.append(str(answer["id"]))
            item.file_ids = uploaded
            self._save_outbox()  # a restart sends these ids rather than uploading again
        return await self.client.send(
            item.channel_id,
            item.content,
            reply_to=item.reply_to,
            attachments=list(item.file_ids),
            nonce=item.nonce,
        )

    def _outbox_path(self) -> Path | None:
        if self.me is None or not self.me.username:
            return None
        host = re.sub(r"[^a-z0-9.-]+", "_", self.server_url.split("://", 1)[-1].lower())
        return self.settings.home / "outbox" / f"{host}-{self.me.username}.json"

    def _save_outbox(self) -> None:
        """Keep the outbox on disk (private to the user), so quitting while offline loses
        nothing; the nonces make the later sends exactly-once."""
        path = self._outbox_path()
        if path is None:
            return
        try:
            if self._outbox:
                write_private(path, json.dumps([i.to_json() for i in self._outbox]))
            else:
                path.unlink(missing_ok=True)
        except OSError:
            log.warning("outbox: could not write %s", path, exc_info=True)

    def _load_outbox(self) -> None:
        path = self._outbox_path()
        if path is None:
            return
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            items = [OutgoingMessage.from_json(d) for d in stored]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("outbox: %s is unreadable; starting with an empty outbox", path)
            return
        known = {i.nonce for i in self._outbox}
        self._outbox.extend(i for i in items if i.nonce not in known)

    def _schedule_outbox_retry(self) -> None:
        if self._closed or (self._outbox_retry is not None and not self._outbox_retry.cancelled()):
            return

        def retry() -> None:
            self._outbox_retry = None
            if self.state == "online" and self._outbox:
                self._spawn(self.flush_outbox())

        self._outbox_retry = asyncio.get_running_loop().call_later(OUTBOX_RETRY_SECONDS, retry)

    async def edit(self, message_id: UUID | str, text: str) -> bool:
        """Change the text of one of your messages; False (and :attr:`error`) if refused."""
        try:
            message = await self.client.edit(message_id, text)
        except (ApiError, *_NETWORK_ERRORS) as exc:
            self._set_error(exc)
            return False
        self.timeline(message.channel_id).replace(message)
        return True

    async def delete(self, message_id: UUID | str) -> bool:
        """Delete a message (yours, or any with manage_messages); False if refused."""
        key = UUID(str(message_id))
        try:
            await self.client.delete(key)
        except (ApiError, *_NETWORK_ERRORS) as exc:
            self._set_error(exc)
            return False
        for timeline in self._timelines.values():
            timeline.remove(key)
        return True

    async def download(self, attachment: Attachment, dest_dir: Path | str) -> Path | None:
        """Save an attachment into `dest_dir` under its own (sanitised, de-duplicated) name."""
        try:
            data = await self.client.download(attachment.id)
        except (ApiError, *_NETWORK_ERRORS) as exc:
            self._set_error(exc)
            return None
        target = _free_name(Path(dest_dir), _safe_filename(attachment.filename))
        try:
            await asyncio.to_thread(_write_new, target, data)
        except OSError as exc:
            self._set_error(f"Could not save {target.name}: {exc.strerror or exc}.")
            return None
        return target

    async def typing(self, channel_id: UUID | str) -> None:
        """The user is typing in a channel (call on every key press; throttled here)."""
        key = UUID(str(channel_id))
        now = asyncio.get_running_loop().time()
        if now - self._last_typing.get(key, -TYPING_RESEND_SECONDS) < TYPING_RESEND_SECONDS:
            return
        self._last_typing[key] = now
        if self.state != "online":
            return
        try:
            await self.client.typing(key)
        except (ApiError, TimeoutError, *_NETWORK_ERRORS):
            log.info("typing indicator not sent", exc_info=True)

    async def set_presence(self, status: Presence) -> bool:
        """Online, idle, do not disturb, or invisible (`offline`)."""
        try:
            await self.client.set_presence(status)
        except (ApiError, TimeoutError, *_NETWORK_ERRORS) as exc:
            self._set_error(exc)
            return False
        if self.me is not None and self.me.id is not None:
            self.me = self.me.model_copy(update={"status": status})
            self._set_member(self.me, status)
            self.notify(Change("me"))
        return True

    # -- voice ------------------------------------------------------------------------------

    async def join_voice(self, channel_id: UUID | str) -> bool:
        """Join a voice channel (leaving the current one) and start the audio engine."""
        key = UUID(str(channel_id))
        async with self._voice_lock:
            if self.voice is not None:
                await self._hang_up(announce=self.voice.channel_id != key)
            muted = self.voice.muted if self.voice else False
            deafened = self.voice.deafened if self.voice else False
            self.voice = VoiceState(channel_id=key, muted=muted, deafened=deafened)
            try:
                await self._dial(self.voice)
            except Exception as exc:  # the server, the network, or the sound devices
                # Tell the server too: voice.join may have succeeded before the media failed.
                await self._hang_up(announce=True)
                self.voice = None
                self._set_error(exc)
                self.notify(Change("voice"))
                return False
        self.notify(Change("voice", key))
        return True

    async def _dial(self, voice: VoiceState) -> None:
        call = VoiceCall(self.client, voice.channel_id)
        self._call = call
        joined = await call.join()
        audio_info = joined.get("audio") or {}
        voice.bitrate = self.settings.audio.bitrate or audio_info.get("bitrate")
        voice.frame_ms = self.settings.audio.frame_ms or audio_info.get("frame_ms")
        room = self.voice_rooms.setdefault(voice.channel_id, {})
        room.clear()
        for participant in joined.get("participants", []):
            user_id = UUID(str(participant["user_id"]))
            room[user_id] = VoiceParticipant(user_id, muted=bool(participant.get("muted")))
        if self.me is not None and self.me.id is not None:
            room[self.me.id] = VoiceParticipant(self.me.id, muted=voice.muted)
        voice.participants = room
        audio = self.settings.audio.model_copy(
            update={"bitrate": voice.bitrate, "frame_ms": voice.frame_ms}
        )
        engine = self.engine_factory.create(call, audio)
        self._engine = engine
        engine.muted = voice.muted
        engine.deafened = voice.deafened
        for uid, volume in self.settings.user_volumes.items():
            engine.set_user_volume(uid, volume)
        await engine.start()
        if voice.muted:
            await call.mute()
        voice.connected = True

    async def _hang_up(self, *, announce: bool) -> None:
        engine, call = self._engine, self._call
        self._engine = self._call = None
        if engine is not None:
            with contextlib.suppress(Exception):
                await engine.stop()
        if call is not None:
            if announce:
                await call.leave()
            else:
                with contextlib.suppress(Exception):
                    await call.peer.aclose()

    async def leave_voice(self) -> None:
        """Leave the voice channel."""
        async with self._voice_lock:
            if self.voice is None:
                return
            channel_id = self.voice.channel_id
            await self._hang_up(announce=self.state == "online")
            self.voice = None
            room = self.voice_rooms.get(channel_id)
            if room is not None and self.me is not None and self.me.id is not None:
                room.pop(self.me.id, None)
        self.notify(Change("voice", channel_id))

    async def set_muted(self, muted: bool) -> bool:
        """Stop (or resume) sending your voice; the others see you muted."""
        voice = self.voice
        if voice is None:
            return False
        if not muted and voice.deafened:
            voice.deafened = False
            if self._engine is not None:
                self._engine.deafened = False
        voice.muted = muted
        if self._engine is not None:
            self._engine.muted = muted
        ok = True
        if self._call is not None:
            try:
                await (self._call.mute() if muted else self._call.unmute())
            except (ApiError, TimeoutError, *_NETWORK_ERRORS) as exc:
                self._set_error(exc)
                ok = False
        self.notify(Change("voice", voice.channel_id))
        return ok

    async def set_deafened(self, deafened: bool) -> bool:
        """Hear nothing (and be muted); undeafening restores the mute state from before."""
        voice = self.voice
        if voice is None:
            return False
        if deafened and not voice.deafened:
            self._muted_before_deafen = voice.muted
        voice.deafened = deafened
        if self._engine is not None:
            self._engine.deafened = deafened
        return await self.set_muted(True if deafened else self._muted_before_deafen)

    def push_to_talk(self, pressed: bool) -> None:
        """The push-to-talk key went down (True) or up (False)."""
        if self._engine is not None:
            self._engine.push_to_talk(pressed)

    def set_user_volume(self, user_id: UUID | str, volume: float) -> None:
        """How loud one person plays here, 0.0 to 2.0 (kept in the settings)."""
        volume = min(2.0, max(0.0, float(volume)))
        volumes = dict(self.settings.user_volumes)
        volumes[str(user_id)] = volume
        self.settings.user_volumes = volumes
        self.settings.save()
        if self._engine is not None:
            self._engine.set_user_volume(str(user_id), volume)

    async def apply_audio(self, audio: AudioSettings) -> bool:
        """New audio settings from the Settings screen: saved, and applied to a running call
        (False, and :attr:`error`, when the engine cannot use them, e.g. a missing device)."""
        self.settings.audio = audio
        self.settings.save()
        if self._engine is not None and self.voice is not None:
            live = audio.model_copy(
                update={
                    "bitrate": audio.bitrate or self.voice.bitrate,
                    "frame_ms": audio.frame_ms or self.voice.frame_ms,
                }
            )
            try:
                self.engine_factory.apply(self._engine, live)
            except Exception as exc:  # AudioError from the engine: a message for a person
                self._set_error(exc)
                return False
        return True

    @property
    def voice_engine(self) -> VoiceEngineLike | None:
        """The running audio engine (for its `input_level` meter), None outside a call."""
        return self._engine

    def voice_stats(self) -> dict[str, Any]:
        """The engine's packet, loss, jitter and round-trip figures, and `quality` (empty
        outside a call); also refreshes `voice.quality`. Poll it for the indicator."""
        if self._engine is None:
            return {}
        stats = self._engine.stats()
        if self.voice is not None:
            self.voice.quality = str(stats.get("quality", "unknown"))
        return stats

    async def open_dm(self, *user_ids: UUID | str) -> Channel | None:
        """The DM with these users (made if needed), in the channel tree."""
        try:
            channel = await self.client.dm(*user_ids)
        except (ApiError, *_NETWORK_ERRORS) as exc:
            self._set_error(exc)
            return None
        self.channels.upsert(channel)
        for user in channel.members or []:
            if user.id not in self.members:
                self._set_member(user, user.status)
        self.notify(Change("channels", channel.id))
        return channel

    # -- end-to-end encryption ----------------------------------------------------------------

    def key_store_path(self) -> Path:
        """Where this account's encryption keys live on this machine."""
        host = re.sub(r"[^a-z0-9.-]+", "_", self.server_url.split("://", 1)[-1].lower())
        username = self.me.username if self.me else "unknown"
        return self.settings.home / "keys" / f"{host}-{username}.keys"

    @property
    def encryption_enabled(self) -> bool:
        """Whether this session encrypts and decrypts (DMs and encrypted channels)."""
        return self.client.crypto is not None

    async def enable_encryption(self, store: CryptoStore | None = None) -> bool:
        """Make this installation an encryption device, so DMs and encrypted channels read
        and write. Done at login when the OS keyring works; without one, pass a store (e.g.
        `PassphraseStore(session.key_store_path(), passphrase)` after asking for it)."""
        if self.client.crypto is not None:
            return True
        if store is None:
            account = f"{self.server_url}|{self.me.username if self.me else ''}"
            store = KeyringStore(self.key_store_path(), account)
        try:
            await self.client.enable_encryption(store, on_trust_event=self._on_trust_event)
        except (ApiError, CryptoError, StoreError, *_NETWORK_ERRORS) as exc:
            self._set_error(exc)
            return False
        for timeline in self._timelines.values():
            channel = self.channels.get(timeline.channel_id)
            if timeline.loaded and channel is not None and channel.encrypted:
                self._spawn(timeline.load_latest())
        return True

    def _on_trust_event(self, event: TrustEvent) -> None:
        self.trust_events.append(event)
        self.notify(Change("trust", payload=event))

    # -- account ----------------------------------------------------------------------------

    async def mfa_setup(self) -> tuple[str, str]:
        """Start two-factor set-up: `(otpauth_uri, secret)` for a QR code and manual entry.

        Raises:
            ApiError: e.g. MFA is already on (see :func:`readable_error`).
        """
        setup: MfaSetup = await self.client.mfa_setup()
        return setup.otpauth_uri, setup.secret

    async def mfa_enable(self, code: str) -> list[str]:
        """Confirm the set-up with a code; returns the backup codes (show them once)."""
        codes = await self.client.mfa_enable(code.strip().replace(" ", ""))
        self.me = self.client.user
        self.notify(Change("me"))
        return codes

    async def mfa_disable(self, code: str) -> None:
        """Turn two-factor authentication off (a current code or a backup code)."""
        await self.client.mfa_disable(code.strip().replace(" ", ""))
        self.me = self.client.user
        self.notify(Change("me"))

    # -- syncing ----------------------------------------------------------------------------

    async def _sync(self) -> None:
        """Fetch what the gateway does not replay: profile, channels, members, the newest
        page of every loaded timeline; then send the outbox and rejoin voice."""
        self.me = await self.client.me()
        self._set_member(self.me, self.me.status)
        channels = await self.client.channels()
        gone = set(self._timelines) - {c.id for c in channels}
        self.channels.replace(channels)
        for channel_id in gone:
            self._timelines.pop(channel_id).close()
        users, states = await asyncio.gather(self.client.users(), self.client.voice_states())
        for user in users:
            self._set_member(user, user.status)
        self._load_voice_states(states)
        self.notify(Change("me"))
        self.notify(Change("channels"))
        self.notify(Change("members"))
        for timeline in list(self._timelines.values()):
            if timeline.loaded:
                try:
                    await timeline.load_latest()
                except ApiError as exc:
                    self._set_error(exc)
        self._synced = True
        await self.flush_outbox()

    def _load_voice_states(self, states: list[CallMember]) -> None:
        """Who is in which call now; speaking flags already known are kept."""
        rooms: dict[UUID, dict[UUID, VoiceParticipant]] = {}
        for state in states:
            known = self.voice_rooms.get(state.channel_id, {}).get(state.user_id)
            speaking = known is not None and known.speaking and not state.muted
            rooms.setdefault(state.channel_id, {})[state.user_id] = VoiceParticipant(
                state.user_id, muted=state.muted, speaking=speaking
            )
        self.voice_rooms.clear()
        self.voice_rooms.update(rooms)
        if self.voice is not None:
            self.voice.participants = self.voice_rooms.setdefault(self.voice.channel_id, {})
        self.notify(Change("voice"))

    async def _resync(self) -> None:
        try:
            await self._sync()
        except (ApiError, *_NETWORK_ERRORS) as exc:
            self._set_error(exc)
            return
        if self.voice is not None:
            # Not awaited: dialling waits for ICE and DTLS, and events must keep flowing.
            self._spawn(self._rejoin_voice())

    async def _rejoin_voice(self) -> None:
        # The server forgot the call when the socket dropped (or it restarted): dial again.
        async with self._voice_lock:
            voice = self.voice
            if voice is None:
                return
            await self._hang_up(announce=False)
            voice.connected = False
            try:
                await self._dial(voice)
            except Exception as exc:  # the server, the network, or the sound devices
                await self._hang_up(announce=True)
                self.voice = None
                self._set_error(exc)
        self.notify(Change("voice", voice.channel_id))

    def _on_gateway_state(self, state: GatewayState) -> None:
        self._set_state(_GATEWAY_STATES[state])
        if state == "online" and not self._synced and self._started:
            # The first connection after a start without the server: catch up now.
            self._spawn(self._resync())
        if state == "reconnecting" and self.voice is not None:
            self.voice.connected = False
            self.notify(Change("voice", self.voice.channel_id))

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._set_error(exc)
            log.warning("background task failed", exc_info=exc)

    def _store_tokens(self) -> None:
        client = self.client
        if client.access_token is None or client.refresh_token is None:
            return
        user = client.user
        self.tokens.save(
            self.server_url,
            StoredTokens(
                access_token=client.access_token,
                refresh_token=client.refresh_token,
                user_id=str(user.id) if user and user.id else None,
                username=user.username if user else None,
            ),
        )

    # -- gateway events ---------------------------------------------------------------------

    async def _pump(self) -> None:
        async for event in self.client.events():
            try:
                await self._on_event(event)
            except Exception:
                log.exception("could not apply %s", event.method)

    async def _on_event(self, event: GatewayEvent) -> None:
        method, params = event.method, event.params
        crypto = self.client.crypto
        if crypto is not None:
            await crypto.on_gateway_event(method, params)
        if method in ("message.new", "message.edit"):
            if crypto is not None and params.get("encrypted"):
                message = await crypto.decrypt_event(params)
            else:
                message = Message.model_validate(params)
            timeline = self.timeline(message.channel_id)
            if method == "message.new":
                self.forget_delivered([message])
                timeline.add(message)
            else:
                timeline.replace(message)
            self.note_authors([message])
        elif method == "message.delete":
            self.timeline(params["channel_id"]).remove(UUID(params["id"]))
        elif method == "channel.update":
            self._on_channel_update(params)
        elif method in ("typing.start", "typing.stop"):
            user_id = UUID(params["user_id"])
            if self.me is not None and user_id == self.me.id:
                return
            timeline = self.timeline(params["channel_id"])
            self._learn_user(user_id)
            if method == "typing.start":
                timeline.typing_started(user_id, float(params.get("expires_in") or 8))
            else:
                timeline.typing_stopped(user_id)
        elif method == "presence.update":
            await self._on_presence(UUID(params["user_id"]), params["status"])
        elif method.startswith("voice."):
            self._on_voice_event(method, params)
        elif method == "gateway.reconnected":
            await self._resync()
        elif method == "gateway.auth_failed":
            self.tokens.delete(self.server_url)
            self._set_error("Your session has ended. Sign in again.")
            self._set_state("offline")
            self.notify(Change("session_ended"))

    def _on_channel_update(self, params: dict[str, Any]) -> None:
        channel = Channel.model_validate(params["channel"])
        if params.get("action") == "delete":
            self.channels.remove(channel.id)
            timeline = self._timelines.pop(channel.id, None)
            if timeline is not None:
                timeline.close()
            if self.selected_channel == channel.id:
                self.selected_channel = None
            if self.voice is not None and self.voice.channel_id == channel.id:
                self._spawn(self.leave_voice())
        else:
            self.channels.upsert(channel)
            for user in channel.members or []:
                self._set_member(user, user.status)
        self.notify(Change("channels", channel.id))

    async def _on_presence(self, user_id: UUID, status: Presence) -> None:
        member = self.members.get(user_id)
        if member is None:
            try:
                user = await self.client.get_user(user_id)
            except (ApiError, *_NETWORK_ERRORS):
                user = User(id=user_id, username=str(user_id)[:8], status=status)
            self._set_member(user, status)
        else:
            self.members[user_id] = Member(member.user, status)
        if self.me is not None and user_id == self.me.id:
            self.me = self.me.model_copy(update={"status": status})
            self.notify(Change("me"))
        self.notify(Change("members", payload=user_id))

    def _learn_user(self, user_id: UUID) -> None:
        """Fetch the profile of someone seen for the first time (typing, in voice) who was not
        in the member list loaded at start (they registered since), so the GUI can name them."""
        if user_id in self.members or user_id in self._learning:
            return
        self._learning.add(user_id)

        async def learn() -> None:
            try:
                user = await self.client.get_user(user_id)
            except (ApiError, *_NETWORK_ERRORS):
                return
            finally:
                self._learning.discard(user_id)
            if user_id not in self.members:
                self._set_member(user, user.status)
                self.notify(Change("members", payload=user_id))
                for timeline in self._timelines.values():
                    if user_id in timeline.typing_user_ids:
                        self.notify(Change("typing", timeline.channel_id, timeline.typing_users))

        self._spawn(learn())

    def _set_member(self, user: User, presence: Presence) -> None:
        if user.id is None:
            return
        self.members[user.id] = Member(
            User(**user.model_dump(include={"id", "username", "display_name", "avatar_url"})),
            presence,
        )

    def _on_voice_event(self, method: str, params: dict[str, Any]) -> None:
        if "user_id" not in params or "channel_id" not in params:
            return
        channel_id, user_id = UUID(params["channel_id"]), UUID(params["user_id"])
        self._learn_user(user_id)
        room = self.voice_rooms.setdefault(channel_id, {})
        current = room.get(user_id, VoiceParticipant(user_id))
        if method == "voice.user_joined":
            room[user_id] = VoiceParticipant(user_id, muted=bool(params.get("muted")))
        elif method == "voice.user_left":
            room.pop(user_id, None)
        elif method == "voice.speaking":
            room[user_id] = VoiceParticipant(
                user_id, muted=current.muted, speaking=bool(params.get("speaking"))
            )
        elif method == "voice.state":
            muted = bool(params.get("muted"))
            room[user_id] = VoiceParticipant(
                user_id, muted=muted, speaking=current.speaking and not muted
            )
        else:
            return
        if self.voice is not None and self.voice.channel_id == channel_id:
            self.voice.participants = room
        self.notify(Change("voice", channel_id, payload=user_id))


_UNSAFE = re.compile(r"[^\w.\- ()\[\]]+")


def _safe_filename(name: str) -> str:
    base = Path(name.replace("\\", "/")).name.strip().lstrip(".")
    base = _UNSAFE.sub("_", base)[:200]
    return base or "download"


def _free_name(directory: Path, name: str) -> Path:
    target = directory / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 1
    while target.exists():
        target = directory / f"{stem} ({n}){suffix}"
        n += 1
    return target


def _write_new(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("xb") as file:
        file.write(data)
