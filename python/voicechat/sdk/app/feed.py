"""How the parts of a session report: change notifications, the error sentence, background tasks.

Every part of :class:`~voicechat.sdk.app.AppSession` (the outbox, the voice controller, the
event applier...) gets the session's one :class:`ChangeFeed` and one :class:`Background`
instead of the session itself, so that a part depends on what it reports through, not on its
neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import websockets

from voicechat.sdk.app.readable import readable_error
from voicechat.sdk.app.state import Change, Listener

log = logging.getLogger(__name__)

# Network failures: the server is unreachable for now, which is worth a sentence, not a bug.
NETWORK_ERRORS = (httpx.TransportError, ConnectionError, OSError, websockets.ConnectionClosed)


class ChangeFeed:
    """The listeners of one session, and the error sentence the GUI shows next.

    Args:
        server_url: named in the sentences about an unreachable server.
    """

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.error: str | None = None
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(change)` after every change; returns a function that unsubscribes."""
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

    def report(self, problem: BaseException | str) -> str:
        """Make `problem` the error shown (as a sentence); returns the sentence."""
        if isinstance(problem, str):
            text = problem
        else:
            text = readable_error(problem, server_url=self.server_url)
        self.error = text
        self.notify(Change("error", payload=text))
        return text

    def clear_error(self) -> None:
        """The person has seen the error."""
        self.error = None
        self.notify(Change("error", payload=None))


class Background:
    """Tasks a session started and does not await; a failure becomes the error shown."""

    def __init__(self, feed: ChangeFeed) -> None:
        self._feed = feed
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str | None = None) -> None:
        """Run `coroutine` on the running loop, kept until done."""
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._feed.report(exc)
            log.warning("background task failed", exc_info=exc)

    async def cancel_all(self) -> None:
        """Cancel every task still running and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
