"""The gateway of one API instance: its sockets, event fan-out, presence and typing.

Every instance subscribes once to the events channel (`keys.events_channel()`); producers on
any instance publish there (`EventBus.publish`), so an event reaches the sockets of every
instance the same way, the publisher's own included.

Who receives a channel event is decided from a per-user cache of "may this user see that
channel", shared by the user's sockets on this instance:

* When the user's first socket opens, the cache is filled with `visible_channels` (one query)
  and is *complete*: a channel missing from it is invisible.
* Invalidation: an event whose method starts with `channel.` (update, create, delete,
  membership) marks its channel unknown for every local user; one whose method starts with
  `role.`, `roles.` or `member.` drops every local user's cache (roles can change any channel's
  visibility). A lost pub/sub connection drops every cache too, since invalidations may
  have been missed.
* An event for a channel some users have no answer for costs one query for all of them
  (`visibility.users_who_see`); the answers are cached.
* A `channel.*` event goes to those who could see the channel before it and those who can
  see it after, so a deleted channel's event or a removal from a private channel reaches
  the people who lost it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast
from uuid import UUID

from redis.exceptions import RedisError
from starlette.websockets import WebSocket

from voicechat.auth.service import Authenticated, AuthService
from voicechat.cache import Cache, keys
from voicechat.chat.moderation import ensure_can_communicate
from voicechat.chat.permissions import Permission, require
from voicechat.db.pool import Pool
from voicechat.db.repositories.users import UserRepository
from voicechat.error_codes import ErrorCode, RpcErrorCode
from voicechat.events import Event, EventBus
from voicechat.gateway.presence import STATUSES, Admission, PresenceStore, Status
from voicechat.gateway.protocol import (
    MAX_FRAME_BYTES,
    CloseCode,
    Request,
    RpcError,
    notification_frame,
)
from voicechat.gateway.socket import Socket, TokenBucket
from voicechat.gateway.visibility import channels_visible_to, users_who_see
from voicechat.gateway.websocket_protocol import encode_text_frame
from voicechat.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[Socket, dict[str, Any]], Awaitable[Any]]

CHANNEL_EVENT_PREFIX = "channel."
#: Events for the instances' services, not for clients (`Gateway.internal_handlers`).
INTERNAL_EVENT_PREFIX = "internal."
#: Sessions checked per Valkey round trip by the periodic session check.
SESSION_CHECK_BATCH = 500
ROLE_EVENT_PREFIXES = ("role.", "roles.", "member.")


@dataclass(slots=True)
class GatewayConfig:
    """Limits and timings of the gateway (docs/gateway.md explains each)."""

    auth_timeout: float = 10.0
    heartbeat_interval: float = 30.0
    #: A socket that sends nothing (not even `ping`) for this long is closed (4002).
    heartbeat_timeout: float = 75.0
    #: Frames waiting to be sent to one socket; more closes it as a slow consumer (4009).
    send_queue_size: int = 256
    close_timeout: float = 10.0
    max_frame_bytes: int = MAX_FRAME_BYTES
    #: Requests per user on this instance: a burst, then a sustained rate per second.
    rate_burst: int = 40
    rate_per_second: float = 10.0
    #: Refused requests tolerated (refilling one per second) before closing with 4008.
    abuse_strikes: int = 20
    #: How often the instance refreshes its heartbeat and looks for dead instances.
    maintenance_interval: float = keys.INSTANCE_HEARTBEAT_TTL_SECONDS / 3
    typing_ttl: float = float(keys.TYPING_TTL_SECONDS)
    #: How often the sessions behind open sockets are checked; a socket whose session was
    #: revoked (logout, refresh-token reuse, `DELETE /auth/sessions/{id}`) is closed (4003).
    session_check_interval: float = 15.0
    #: Open sockets one user, and one client address, may hold across every instance
    #: (None: no cap). A socket over either is refused with 4029.
    max_sockets_per_user: int | None = None
    max_sockets_per_ip: int | None = None
    #: Connection attempts per client address and `auth` attempts per user, in `limits`
    #: notation ("600/minute"; None: not limited), counted on Valkey before anything else.
    connect_limit_ip: str | None = None
    connect_limit_user: str | None = None
    #: Sockets of this instance being admitted (or detached) at once; the others wait. Bounds
    #: the pooled Valkey and PostgreSQL connections the gateway can take from HTTP requests.
    admission_concurrency: int = 8

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewayConfig:
        """The configuration `voicechat serve` runs with: the caps from the settings."""
        return cls(
            max_sockets_per_user=settings.gateway_max_sockets_per_user,
            max_sockets_per_ip=settings.gateway_max_sockets_per_ip,
            connect_limit_ip=settings.rate_limit_gateway_ip,
            connect_limit_user=settings.rate_limit_gateway_user,
        )


@dataclass(eq=False, slots=True)
class LocalUser:
    """A user with at least one socket on this instance, and what they may see."""

    id: UUID
    budget: TokenBucket
    strikes: TokenBucket
    sockets: set[Socket] = field(default_factory=set)
    #: channel id → visible (True), invisible (False) or unknown (None, ask the database).
    answers: dict[UUID, bool | None] = field(default_factory=dict)
    #: Whether `answers` lists every visible channel (a missing id is then invisible).
    complete: bool = False

    def sees(self, channel_id: UUID) -> bool | None:
        """The cached answer for a channel, None when it has to be asked."""
        if channel_id in self.answers:
            return self.answers[channel_id]
        return False if self.complete else None

    def forget(self) -> None:
        """Drop every cached answer."""
        self.answers = {}
        self.complete = False


class Gateway:
    """The `/ws` endpoint's state on one API instance."""

    def __init__(
        self,
        *,
        db: Pool,
        cache: Cache,
        auth: AuthService,
        events: EventBus,
        instance_id: str,
        config: GatewayConfig | None = None,
    ) -> None:
        self.db = db
        self.cache = cache
        self.auth = auth
        self.events = events
        self.instance_id = instance_id
        self.config = config or GatewayConfig.from_settings(auth.settings)
        self.presence = PresenceStore(cache, instance_id)
        self.admissions = asyncio.Semaphore(self.config.admission_concurrency)
        self.users: dict[UUID, LocalUser] = {}
        # A session ended anywhere closes its sockets here at once (the periodic check below
        # is the backstop for a revocation this process did not hear).
        auth.live.on_revoked(self._session_ended)
        self.methods: dict[str, Handler] = {
            "ping": self._ping,
            "typing.start": self._typing_start,
            "typing.stop": self._typing_stop,
            "presence.set": self._presence_set,
        }
        # Services built on the gateway (voice) clean up after sockets and dead instances.
        self.on_detach: list[Callable[[Socket], Awaitable[None]]] = []
        self.on_instance_dead: list[Callable[[str], Awaitable[None]]] = []
        # Events between the instances' services (`internal.*`, voice moderation), never
        # delivered to a client: method -> handler, run on every instance.
        self.internal_handlers: dict[str, Callable[[Event], Awaitable[None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._subscribed = asyncio.Event()
        self._stopping = asyncio.Event()
        # Bumped by every invalidation: a cache filled while it changed is not trusted.
        self._generation = 0
        self._typing_timers: dict[tuple[UUID, UUID], asyncio.TimerHandle] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Register the instance, subscribe to events, start the heartbeat."""
        await self.presence.beat()
        self._tasks = [
            asyncio.create_task(self._subscribe(), name="gateway-events"),
            asyncio.create_task(self._maintain(), name="gateway-maintenance"),
            asyncio.create_task(self._check_sessions(), name="gateway-sessions"),
            asyncio.create_task(self._check_heartbeats(), name="gateway-heartbeats"),
        ]
        try:
            async with asyncio.timeout(10):
                await self._subscribed.wait()
        except TimeoutError:
            log.warning("gateway: not yet subscribed to events; retrying in the background")

    async def stop(self) -> None:
        """Stop the tasks; mark this instance's sockets gone (users may go offline)."""
        # The loops also watch `_stopping`: a client library may turn a cancellation that
        # lands inside it into an ordinary error, which the loops survive by design.
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        _, stuck = await asyncio.wait(self._tasks, timeout=5)
        if stuck:
            log.warning("gateway: %d background tasks did not stop", len(stuck))
        for timer in self._typing_timers.values():
            timer.cancel()
        self._typing_timers.clear()
        try:
            for user_id in await self.presence.stop():
                await self._went_offline(user_id)
        except (RedisError, OSError):
            log.warning("gateway: could not clear presence at shutdown", exc_info=True)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def register_method(self, method: str, handler: Handler) -> None:
        """Answer `method` with `handler(socket, params)` (the voice service's hook)."""
        self.methods[method] = handler

    async def serve(self, websocket: WebSocket, ip: str) -> None:
        """Run one client connection to its end.

        Args:
            websocket: the connection.
            ip: the client's address, as trusted proxies report it (the per-IP caps).
        """
        await Socket(self, websocket, ip).run()

    # -- sockets -----------------------------------------------------------------------------

    async def admit_connection(self, ip: str) -> None:
        """Count a connection attempt from `ip` (before `auth`).

        Raises:
            RateLimited: the address has made too many attempts recently.
        """
        if self.config.connect_limit_ip is not None:
            await self.auth.limits.hit(self.config.connect_limit_ip, "gateway-ip", ip)

    async def admit_user(self, user_id: UUID) -> None:
        """Count an `auth` attempt of an authenticated user.

        Raises:
            RateLimited: the user has authenticated too many sockets recently.
        """
        if self.config.connect_limit_user is not None:
            await self.auth.limits.hit(self.config.connect_limit_user, "gateway-user", str(user_id))

    async def attach(self, socket: Socket, auth: Authenticated) -> None:
        """Register an authenticated socket: answer `auth`, start its events, presence.

        Raises:
            RpcError: a cap on open sockets refused it (nothing was registered).
        """
        admission = await self.presence.add(
            auth.user_id,
            socket.id,
            socket.ip,
            max_per_user=self.config.max_sockets_per_user,
            max_per_ip=self.config.max_sockets_per_ip,
        )
        if admission in (Admission.USER_FULL, Admission.IP_FULL):
            limit, whom = (
                (self.config.max_sockets_per_user, "you already have")
                if admission is Admission.USER_FULL
                else (self.config.max_sockets_per_ip, "your address already has")
            )
            raise RpcError(
                RpcErrorCode.SERVER_ERROR,
                f"{whom} {limit} open sockets; close one first",
                {"code": ErrorCode.TOO_MANY_SOCKETS, "limit": limit},
            )
        socket.registered = True
        async with self.db.acquire() as conn:
            profile = await UserRepository(conn).get(auth.user_id)
            user = self.users.get(auth.user_id)
            answers: dict[UUID, bool | None] | None = None
            if user is None:
                generation = self._generation
                visible = await channels_visible_to(conn, auth.user_id)
                if generation == self._generation:
                    answers = dict.fromkeys(visible, True)
        user = self.users.get(auth.user_id)
        if user is None:
            user = LocalUser(
                id=auth.user_id,
                budget=TokenBucket(self.config.rate_burst, self.config.rate_per_second),
                strikes=TokenBucket(self.config.abuse_strikes, 1.0),
            )
            if answers is not None:
                user.answers = answers
                user.complete = True
            self.users[auth.user_id] = user
        socket.user = user
        socket.push(
            socket.auth_answer(
                {
                    "user": {
                        "id": str(profile.id),
                        "username": profile.username,
                        "display_name": profile.display_name,
                        "avatar_url": profile.avatar_url,
                        "status": profile.status,
                    },
                    "session_id": str(auth.session_id),
                    "heartbeat_interval": self.config.heartbeat_interval,
                }
            )
        )
        # From here on the socket receives events (after the answer, which is queued first).
        user.sockets.add(socket)
        if admission is Admission.FIRST:
            await self._came_online(user.id)

    async def detach(self, socket: Socket) -> None:
        """Forget a closed socket; the user goes offline if it was their last anywhere."""
        user = socket.user
        if user is not None:
            for hook in self.on_detach:
                try:
                    await hook(socket)
                except Exception:
                    log.warning(
                        "gateway: a detach hook failed for socket %s", socket.id, exc_info=True
                    )
            user.sockets.discard(socket)
            if not user.sockets and self.users.get(user.id) is user:
                del self.users[user.id]
                for channel_id, user_id in list(self._typing_timers):
                    if user_id == user.id:
                        self._typing_timers.pop((channel_id, user_id)).cancel()
                        self._spawn(self._typing_stopped(channel_id, user_id))
        if not socket.registered or socket.auth is None:
            return
        socket.registered = False
        user_id = socket.auth.user_id
        try:
            async with self.admissions:
                if await self.presence.remove(user_id, socket.id, socket.ip):
                    await self._went_offline(user_id)
        except (RedisError, OSError):
            log.warning("gateway: could not clear presence of socket %s", socket.id)

    async def call(self, socket: Socket, request: Request) -> Any:
        """Run a client request's handler."""
        handler = self.methods.get(request.method)
        if handler is None:
            if request.method == "auth":
                raise RpcError(RpcErrorCode.INVALID_REQUEST, "already authenticated")
            what = (
                "voice is not available on this server yet"
                if request.method.startswith("voice.")
                else f"unknown method {request.method!r}"
            )
            raise RpcError(RpcErrorCode.METHOD_NOT_FOUND, what)
        return await handler(socket, request.params)

    # -- events ------------------------------------------------------------------------------

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _subscribe(self) -> None:
        while not self._stopping.is_set():
            pubsub = self.cache.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.events_channel())
                # Invalidations may have been missed while we were not subscribed.
                self._forget_all()
                self._subscribed.set()
                while not self._stopping.is_set():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        await self.deliver(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("gateway: event subscription lost (%s); resubscribing", exc)
                if not self._subscribed.is_set():
                    # Not restored at the first retry: the sockets here miss events. Close them
                    # with 1013 so that clients come back (and catch up) once Valkey does.
                    self._close_every_socket(
                        CloseCode.TRY_AGAIN_LATER, "events are unavailable; reconnect shortly"
                    )
                self._subscribed.clear()
                await self._pause(1.0)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def deliver(self, raw: bytes | str) -> None:
        """Fan one published event out to the local sockets allowed to receive it."""
        try:
            event = Event.decode(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("gateway: dropped an undecodable event")
            return
        if event.method.startswith(INTERNAL_EVENT_PREFIX):
            handler = self.internal_handlers.get(event.method)
            if handler is not None:
                # Awaited in order: a mute then an unmute must not apply the other way round.
                try:
                    await handler(event)
                except Exception:
                    log.warning("gateway: could not handle %s", event.method, exc_info=True)
            return
        try:
            audience = await self._audience(event)
        except Exception:
            log.exception("gateway: could not decide who receives %s", event.method)
            return
        if not audience:
            return
        # Encoded once (JSON, then the WebSocket frame) for every socket that receives it.
        frame = notification_frame(event.method, event.params)
        encoded = encode_text_frame(frame)
        for user in audience:
            for socket in list(user.sockets):
                socket.push(frame, encoded)

    async def _audience(self, event: Event) -> list[LocalUser]:
        if event.method.startswith(ROLE_EVENT_PREFIXES):
            self._forget_all()
        channel_id = event.channel_id
        if channel_id is None:
            if event.method.startswith(CHANNEL_EVENT_PREFIX):
                # Addressed to users (a new DM, say); still a change to that channel.
                named = _channel_id_in(event.params)
                if named is not None:
                    self._invalidate(named)
                if not event.user_ids:
                    log.warning("gateway: dropped %s without an audience", event.method)
                    return []
            if event.user_ids:
                return [self.users[u] for u in event.user_ids if u in self.users]
            # Neither a channel nor users: everyone connected (presence).
            return list(self.users.values())
        users = list(self.users.values())
        before: set[UUID] = set()
        if event.method.startswith(CHANNEL_EVENT_PREFIX):
            before = {u.id for u in users if u.sees(channel_id)}
            self._invalidate(channel_id)
        unknown = [u for u in users if u.sees(channel_id) is None]
        if unknown:
            async with self.db.acquire() as conn:
                allowed = await users_who_see(conn, channel_id, [u.id for u in unknown])
            for user in unknown:
                user.answers[channel_id] = user.id in allowed
        audience = [u for u in users if u.sees(channel_id) or u.id in before]
        if event.method == "channel.update" and event.params.get("action") == "delete":
            for user in users:
                user.answers.pop(channel_id, None)
        return audience

    def _invalidate(self, channel_id: UUID) -> None:
        self._generation += 1
        for user in self.users.values():
            user.answers[channel_id] = None

    def _close_every_socket(self, code: int, reason: str) -> None:
        sockets = [s for user in list(self.users.values()) for s in user.sockets]
        if sockets:
            log.warning("gateway: closing %d sockets: %s", len(sockets), reason)
        for socket in sockets:
            socket.close_soon(code, reason)

    def _forget_all(self) -> None:
        self._generation += 1
        for user in self.users.values():
            user.forget()

    # -- presence ----------------------------------------------------------------------------

    async def _maintain(self) -> None:
        while not self._stopping.is_set():
            try:
                if not await self.presence.beat():
                    # Taken for dead (a long pause): our entries may have been reaped.
                    for user in list(self.users.values()):
                        for socket in list(user.sockets):
                            # Already admitted: registered again past the caps.
                            added = await self.presence.add(user.id, socket.id, socket.ip)
                            if added is Admission.FIRST:
                                await self._came_online(user.id)
                for dead in await self.presence.dead_instances():
                    if dead == self.instance_id:
                        continue
                    for user_id in await self.presence.reap(dead):
                        log.info("gateway: %s offline (instance %s is gone)", user_id, dead)
                        await self._went_offline(user_id)
                    for hook in self.on_instance_dead:
                        await hook(dead)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("gateway: presence maintenance failed", exc_info=True)
            await self._pause(self.config.maintenance_interval)

    async def _check_heartbeats(self) -> None:
        # One sweep for every socket instead of a timer per socket (memory per idle socket);
        # a silent socket is closed between `heartbeat_timeout` and 1.25 times it.
        while not self._stopping.is_set():
            timeout = self.config.heartbeat_timeout
            await self._pause(min(5.0, timeout / 4))
            deadline = time.monotonic() - self.config.heartbeat_timeout
            for user in list(self.users.values()):
                for socket in user.sockets:
                    if socket.last_heard < deadline:
                        socket.close_soon(CloseCode.HEARTBEAT_TIMEOUT, "no heartbeat")

    def _session_ended(self, session_id: UUID) -> None:
        for user in list(self.users.values()):
            for socket in user.sockets:
                if socket.auth is not None and socket.auth.session_id == session_id:
                    socket.close_soon(CloseCode.AUTHENTICATION_FAILED, "the session has ended")

    async def _check_sessions(self) -> None:
        checked = time.monotonic()
        while not self._stopping.is_set():
            # Short ticks, so that a changed interval applies at once.
            await self._pause(min(1.0, self.config.session_check_interval))
            if time.monotonic() - checked < self.config.session_check_interval:
                continue
            checked = time.monotonic()
            # One EXISTS per session, not per socket (a user's tabs share theirs), in batches:
            # 20,000 sockets must not hold the event loop for one huge pipeline.
            by_session: dict[UUID, list[Socket]] = {}
            for user in list(self.users.values()):
                for socket in user.sockets:
                    # A bot's token is no Valkey session: its revocation closes it (bot_tokens.py).
                    if socket.auth is not None and not socket.auth.bot:
                        by_session.setdefault(socket.auth.session_id, []).append(socket)
            sessions = list(by_session)
            try:
                for start in range(0, len(sessions), SESSION_CHECK_BATCH):
                    batch = sessions[start : start + SESSION_CHECK_BATCH]
                    pipe = self.cache.pipeline(transaction=False)
                    for session_id in batch:
                        pipe.exists(keys.session(session_id))
                    live = await pipe.execute()
                    for session_id, exists in zip(batch, live, strict=True):
                        if not exists:
                            for socket in by_session[session_id]:
                                socket.close_soon(
                                    CloseCode.AUTHENTICATION_FAILED, "the session has ended"
                                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("gateway: could not check sessions", exc_info=True)

    async def _came_online(self, user_id: UUID) -> None:
        status = await self.presence.choice(user_id)
        await self._store_status(user_id, status)
        if status != "offline":
            await self._publish_presence(user_id, status)

    async def _went_offline(self, user_id: UUID) -> None:
        await self._store_status(user_id, "offline")
        await self._publish_presence(user_id, "offline")

    async def _store_status(self, user_id: UUID, status: Status) -> None:
        async with self.db.acquire() as conn:
            await UserRepository(conn).set_status(user_id, status)

    async def _publish_presence(self, user_id: UUID, status: Status) -> None:
        await self.events.publish(
            Event("presence.update", {"user_id": str(user_id), "status": status})
        )

    async def _presence_set(self, socket: Socket, params: dict[str, Any]) -> Any:
        status = params.get("status")
        if status not in STATUSES:
            raise RpcError(
                RpcErrorCode.INVALID_PARAMS, "status must be one of online, idle, dnd, offline"
            )
        chosen = cast(Status, status)
        user_id = _user_of(socket)
        previous = await self.presence.choice(user_id)
        await self.presence.set_choice(user_id, chosen)
        await self._store_status(user_id, chosen)
        if previous != chosen:
            await self._publish_presence(user_id, chosen)
        return {"status": chosen}

    # -- typing ------------------------------------------------------------------------------

    async def _typing_start(self, socket: Socket, params: dict[str, Any]) -> Any:
        channel_id = _uuid_param(params, "channel_id")
        user_id = _user_of(socket)
        async with self.db.acquire() as conn:
            access = await require(conn, user_id, channel_id, Permission.SEND_MESSAGES)
        ensure_can_communicate(access)  # timed out: -32003, data.code `timed_out`
        ttl = self.config.typing_ttl
        now = time.time()
        pipe = self.cache.pipeline(transaction=True)
        pipe.zremrangebyscore(keys.typing(channel_id), "-inf", now)
        pipe.zadd(keys.typing(channel_id), {str(user_id): now + ttl})
        pipe.expire(keys.typing(channel_id), int(ttl) + 1)
        await pipe.execute()
        timer = self._typing_timers.pop((channel_id, user_id), None)
        if timer is not None:
            timer.cancel()
        self._typing_timers[(channel_id, user_id)] = asyncio.get_running_loop().call_later(
            ttl, self._typing_expired, channel_id, user_id
        )
        await self.events.publish(
            Event(
                "typing.start",
                {"channel_id": str(channel_id), "user_id": str(user_id), "expires_in": ttl},
                channel_id=channel_id,
            )
        )
        return {"expires_in": ttl}

    async def _typing_stop(self, socket: Socket, params: dict[str, Any]) -> Any:
        channel_id = _uuid_param(params, "channel_id")
        user_id = _user_of(socket)
        timer = self._typing_timers.pop((channel_id, user_id), None)
        if timer is not None:
            timer.cancel()
        await self._typing_stopped(channel_id, user_id)
        return {}

    def _typing_expired(self, channel_id: UUID, user_id: UUID) -> None:
        self._typing_timers.pop((channel_id, user_id), None)
        self._spawn(self._typing_stopped(channel_id, user_id, only_if_expired=True))

    async def _typing_stopped(
        self, channel_id: UUID, user_id: UUID, *, only_if_expired: bool = False
    ) -> None:
        key = keys.typing(channel_id)
        if only_if_expired:
            # Another instance may have extended it (the user's other socket).
            score = await self.cache.zscore(key, str(user_id))
            if score is None or score > time.time() + 0.05:
                return
        if await self.cache.zrem(key, str(user_id)):
            await self.events.publish(
                Event(
                    "typing.stop",
                    {"channel_id": str(channel_id), "user_id": str(user_id)},
                    channel_id=channel_id,
                )
            )

    async def _ping(self, socket: Socket, params: dict[str, Any]) -> Any:
        return "pong"

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.warning("gateway: background work failed", exc_info=True)

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _user_of(socket: Socket) -> UUID:
    assert socket.user is not None
    return socket.user.id


def _uuid_param(params: dict[str, Any], name: str) -> UUID:
    value = params.get(name)
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise RpcError(RpcErrorCode.INVALID_PARAMS, f"params.{name} must be a channel id (UUID)")


def _channel_id_in(params: dict[str, Any]) -> UUID | None:
    channel = params.get("channel")
    raw = channel.get("id") if isinstance(channel, dict) else params.get("channel_id")
    try:
        return UUID(str(raw)) if raw is not None else None
    except ValueError:
        return None
