"""Whether a session is live, answered from memory for up to a second.

Every authenticated request needs to know that its token's session has not ended. Asking Valkey
each time cost a round trip per request; instead each API process keeps the verdicts it read
(session → owner, or "ended") for at most `REVOCATION_WINDOW_SECONDS`, and drops one the moment
it hears that the session ended: `SessionStore.revoke` publishes the session id on
`keys.session_revocations()`, which every process subscribes to (a process that runs the
revocation itself drops its verdict at once, before answering).

The window is the backstop for what pub/sub cannot promise:

- A verdict is trusted only while the subscription is known to work: subscribed, and a PING on
  it answered within `STALE_AFTER_SECONDS`. When the subscription is lost (Valkey restarted or
  unreachable, the connection dropped) or goes quiet (Valkey paused), every verdict is dropped
  and requests ask Valkey again (which then answers 503 `valkey_unavailable` while it is down)
  until the subscription is back.
- A verdict read just before a revocation and stored just after its message would outlive it:
  a verdict is stored only if no revocation arrived while it was being read, and in any case
  it expires `REVOCATION_WINDOW_SECONDS` after the read began.

So a revoked session is refused on every process within a second (in practice within the
message's delivery time, a millisecond or so). The same class batches "last used": requests
note the time here, and it is written to Valkey every `TOUCH_INTERVAL_SECONDS` in one script
call instead of one write per request. See docs/auth.md, "Access tokens".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from uuid import UUID

from redis.exceptions import RedisError

from voicechat.auth.sessions import SessionStore
from voicechat.cache import Cache, keys

log = logging.getLogger(__name__)

#: The longest a revoked session may still be accepted by some process (the contract).
REVOCATION_WINDOW_SECONDS = 1.0
#: How often the subscription is pinged, and how long without an answer makes it stale.
PING_INTERVAL_SECONDS = 0.2
STALE_AFTER_SECONDS = 0.6
#: How often the "last used" times collected from requests are written to Valkey.
TOUCH_INTERVAL_SECONDS = 5.0
#: Verdicts kept at most (one per session seen in the last second; a bound against floods, a
#: few MiB). Expired ones are swept every `TOUCH_INTERVAL_SECONDS`; the oldest go first.
MAX_VERDICTS = 20_000
#: Pause before subscribing again after the subscription failed.
RESUBSCRIBE_DELAY_SECONDS = 0.5

_ENDED = object()  # the verdict "this session has ended"


class LiveSessions:
    """Cached session verdicts of one API process, kept true by the revocation channel."""

    def __init__(self, cache: Cache, sessions: SessionStore) -> None:
        self._cache = cache
        self._sessions = sessions
        # session id -> (owner or _ENDED, monotonic expiry)
        self._verdicts: dict[UUID, tuple[object, float]] = {}
        # Bumped by every drop: a verdict read while it changed is not stored.
        self._generation = 0
        self._subscribed = False
        self._last_heard = 0.0
        self._used: dict[UUID, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        self._revocation_listeners: list[Callable[[UUID], None]] = []

    def on_revoked(self, listener: Callable[[UUID], None]) -> None:
        """Call `listener(session_id)` whenever this process hears that a session ended.

        The gateway closes that session's open sockets with it, so a logout ends them within
        the same window as requests, not at its next periodic check.
        """
        self._revocation_listeners.append(listener)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to revocations and start writing "last used"; waits up to 5 s for the
        subscription (without it verdicts are simply not cached)."""
        self._stopping.clear()
        self._tasks = [
            asyncio.create_task(self._subscribe(), name="auth-revocations"),
            asyncio.create_task(self._write_last_used(), name="auth-last-used"),
        ]
        try:
            async with asyncio.timeout(5):
                await self._ready.wait()
        except TimeoutError:
            log.warning("auth: not yet subscribed to revocations; retrying in the background")

    async def stop(self) -> None:
        """Stop the tasks and write the "last used" times still pending."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._forget_all()
        with contextlib.suppress(RedisError, OSError):
            await self._flush_last_used()

    # -- the request path --------------------------------------------------------------------

    async def owner(self, session_id: UUID) -> UUID | None:
        """The user whose live session this is, or None when it has ended.

        From memory when a trusted verdict is there, else one Valkey read (whose failure
        propagates: the caller answers 503).
        """
        now = time.monotonic()
        if self._subscribed and now - self._last_heard < STALE_AFTER_SECONDS:
            found = self._verdicts.get(session_id)
            if found is not None:
                verdict, expires = found
                if now < expires:
                    return None if verdict is _ENDED else verdict  # type: ignore[return-value]
                del self._verdicts[session_id]
        elif self._verdicts:
            self._forget_all()
        generation = self._generation
        owner = await self._sessions.owner(session_id)
        if (
            generation == self._generation
            and self._subscribed
            and time.monotonic() - self._last_heard < STALE_AFTER_SECONDS
        ):
            if len(self._verdicts) >= MAX_VERDICTS:
                self._verdicts.pop(next(iter(self._verdicts)))
            self._verdicts[session_id] = (
                _ENDED if owner is None else owner,
                now + REVOCATION_WINDOW_SECONDS,
            )
        return owner

    def used(self, session_id: UUID) -> None:
        """Note that the session was used now (written to Valkey within a few seconds)."""
        if self._tasks:
            self._used[session_id] = int(time.time())

    def forget(self, session_id: UUID) -> None:
        """Drop the verdict on one session (it has just ended) and tell the listeners."""
        self._generation += 1
        self._verdicts.pop(session_id, None)
        self._used.pop(session_id, None)
        for listener in self._revocation_listeners:
            try:
                listener(session_id)
            except Exception:
                log.exception("auth: a revocation listener failed")

    # -- background --------------------------------------------------------------------------

    def _forget_all(self) -> None:
        self._generation += 1
        self._verdicts.clear()

    async def _subscribe(self) -> None:
        while not self._stopping.is_set():
            pubsub = self._cache.pubsub()
            try:
                await pubsub.subscribe(keys.session_revocations())
                last_ping = 0.0
                while not self._stopping.is_set():
                    if time.monotonic() - last_ping >= PING_INTERVAL_SECONDS:
                        last_ping = time.monotonic()
                        await pubsub.ping()
                    message = await pubsub.get_message(timeout=PING_INTERVAL_SECONDS)
                    if message is not None:
                        self._heard(message)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self._subscribed:
                    log.warning("auth: revocation subscription lost (%s); resubscribing", exc)
                self._subscribed = False
                self._forget_all()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RESUBSCRIBE_DELAY_SECONDS):
                        await self._stopping.wait()
            finally:
                self._subscribed = False
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _heard(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        self._last_heard = time.monotonic()
        if kind == "subscribe":
            # (Re)subscribed, possibly by the client library after a dropped connection:
            # revocations may have been missed meanwhile.
            self._forget_all()
            self._subscribed = True
            self._ready.set()
        elif kind == "message":
            raw = message.get("data")
            try:
                session_id = UUID(raw.decode() if isinstance(raw, bytes) else str(raw))
            except ValueError:
                log.warning("auth: dropped an undecodable revocation")
                return
            self.forget(session_id)

    async def _write_last_used(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TOUCH_INTERVAL_SECONDS):
                    await self._stopping.wait()
            now = time.monotonic()
            self._verdicts = {
                session_id: found for session_id, found in self._verdicts.items() if found[1] > now
            }
            try:
                await self._flush_last_used()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("auth: could not record when sessions were last used (%s)", exc)

    async def _flush_last_used(self) -> None:
        if not self._used:
            return
        pending, self._used = self._used, {}
        try:
            await self._sessions.mark_used(pending)
        except BaseException:
            # Not lost: merged back (newer times noted meanwhile win) for the next round.
            for session_id, used in pending.items():
                self._used[session_id] = max(used, self._used.get(session_id, 0))
            raise
