"""Async wrappers over the native SFU and client peer.

Every native call that waits (for the media thread, or for events and packets) runs in the
default executor, so the event loop never blocks; the native side releases the GIL while it
waits. Events and packets are pulled in batches by a worker thread and handed to the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Generic, Self, TypeVar

from voicechat._native import SfuStoppedError
from voicechat._native import sfu as _sfu

T = TypeVar("T")

log = logging.getLogger(__name__)

#: The receive buffer the SFU asks for per media socket; bursts beyond it are dropped.
WANTED_SOCKET_BUFFER = 4 * 1024 * 1024

#: Seconds one background poll for events or packets may wait.
POLL_INTERVAL = 0.2


class _Poller(Generic[T]):
    """Pulls batches from a blocking native call without losing one to cancellation.

    A cancelled `await` cannot stop a call already running in a thread; its result is kept in
    the backlog and returned by the next `next_batch` instead of being dropped.
    """

    def __init__(self, poll: Callable[[float], list[T]]) -> None:
        self._poll = poll
        self._backlog: deque[T] = deque()
        self._running: asyncio.Future[list[T]] | None = None

    async def next_batch(self, wait: float) -> list[T]:
        if self._backlog:
            batch = list(self._backlog)
            self._backlog.clear()
            return batch
        if self._running is None:
            loop = asyncio.get_running_loop()
            self._running = loop.run_in_executor(None, self._poll, wait)
        running = self._running
        try:
            batch = await asyncio.shield(running)
        except asyncio.CancelledError:
            running.add_done_callback(self._keep)
            self._running = None
            raise
        self._running = None
        return batch

    def _keep(self, future: asyncio.Future[list[T]]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._backlog.extend(future.result())


class Sfu:
    """The SFU media plane, for asyncio code.

    Args:
        config: The native configuration (`voicechat._native.sfu.SfuConfig`); its defaults if
            None.

    Use it as an async context manager, or call `aclose()`. Events (joins completing, leaves,
    speaking changes, renegotiation offers) come from `events()`.
    """

    def __init__(self, config: _sfu.SfuConfig | None = None) -> None:
        self.native = _sfu.Sfu(config)
        self._events = _Poller(self._poll_events)

    def _poll_events(self, timeout: float) -> list[_sfu.SfuEvent]:
        return self.native.poll_events(timeout)

    @property
    def local_addr(self) -> tuple[str, int]:
        """(host, port) of the UDP media socket."""
        return self.native.local_addr

    @property
    def ports(self) -> str:
        """The UDP port, or the range of ports of several media threads, as text."""
        ports = [port for _, port in self.native.local_addrs]
        if len(ports) > 1 and ports == list(range(ports[0], ports[0] + len(ports))):
            return f"{ports[0]}-{ports[-1]}"
        return ",".join(map(str, ports))

    async def create_room(self, room_id: str, user_limit: int | None = None) -> None:
        """Create a room (or change its user limit); see `_native.sfu.Sfu.create_room`."""
        await asyncio.to_thread(self.native.create_room, room_id, user_limit)

    async def close_room(self, room_id: str) -> None:
        """Remove a room and its participants."""
        await asyncio.to_thread(self.native.close_room, room_id)

    async def join(self, room_id: str, participant_id: str, offer_sdp: str) -> str:
        """Add a participant from its SDP offer; return the SDP answer.

        Raises:
            InvalidSdpError: Garbage, audio-less or Opus-less SDP.
            RoomFullError: The room holds its user limit.
        """
        return await asyncio.to_thread(self.native.join, room_id, participant_id, offer_sdp)

    async def accept_answer(self, participant_id: str, sdp: str) -> None:
        """Take a participant's answer to the SFU's renegotiation offer."""
        await asyncio.to_thread(self.native.accept_answer, participant_id, sdp)

    async def pending_offer(self, participant_id: str) -> str | None:
        """The offer awaiting this participant's answer, or None."""
        return await asyncio.to_thread(self.native.pending_offer, participant_id)

    async def leave(self, participant_id: str) -> None:
        """Remove a participant."""
        await asyncio.to_thread(self.native.leave, participant_id)

    async def set_muted(self, participant_id: str, muted: bool) -> None:
        """Stop or resume forwarding a participant."""
        await asyncio.to_thread(self.native.set_muted, participant_id, muted)

    async def stats(self, participant_id: str) -> _sfu.ParticipantStats:
        """A participant's counters and quality figures."""
        return await asyncio.to_thread(self.native.stats, participant_id)

    async def participants(self, room_id: str) -> list[str]:
        """Ids of a room's participants, in join order."""
        return await asyncio.to_thread(self.native.participants, room_id)

    async def events(self) -> AsyncIterator[_sfu.SfuEvent]:
        """Yield events as they happen, until the SFU is closed.

        Meant for one consumer at a time (the voice service's dispatcher): concurrent
        iterators would share batches. Breaking out of the loop (or cancelling it) loses no
        event: the next `events()` starts with whatever the background poll had already taken.
        """
        while True:
            try:
                batch = await self._events.next_batch(POLL_INTERVAL)
            except SfuStoppedError:
                return
            for event in batch:
                yield event

    async def aclose(self) -> None:
        """Stop the media thread (participants are not told). Idempotent."""
        await asyncio.to_thread(self.native.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class Peer:
    """A native WebRTC client peer, for asyncio code.

    Args:
        bind_ip: Address its UDP socket binds to; also its ICE host candidate.
        send_loss: Fraction (0 to 1) of outgoing media datagrams to drop, for tests.
        seed: Seed of the loss pattern and initial RTP sequence number and timestamp.
    """

    def __init__(
        self, *, bind_ip: str = "127.0.0.1", send_loss: float = 0.0, seed: int = 1
    ) -> None:
        self.native = _sfu.Peer(bind_ip=bind_ip, send_loss=send_loss, seed=seed)
        self._packets = _Poller(self._poll_packets)

    def _poll_packets(self, timeout: float) -> list[_sfu.ReceivedPacket]:
        first = self.native.recv(timeout)
        if first is None:
            return []
        batch = [first]
        while (more := self.native.recv(0.0)) is not None:
            batch.append(more)
        return batch

    @property
    def connected(self) -> bool:
        """Whether ICE and DTLS are up."""
        return self.native.connected

    async def offer(self) -> str:
        """Make the peer's SDP offer."""
        return await asyncio.to_thread(self.native.offer)

    async def accept_answer(self, sdp: str) -> None:
        """Take the answer to `offer()`."""
        await asyncio.to_thread(self.native.accept_answer, sdp)

    async def accept_offer(self, sdp: str) -> str:
        """Take a renegotiation offer from the SFU; return the answer."""
        return await asyncio.to_thread(self.native.accept_offer, sdp)

    def send(self, payload: bytes, audio_level: int = 127) -> None:
        """Send one Opus packet with its RFC 6464 level (returns at once)."""
        self.native.send(payload, audio_level)

    async def packets(self) -> AsyncIterator[_sfu.ReceivedPacket]:
        """Yield packets from the other participants as they arrive, until closed."""
        while True:
            try:
                batch = await self._packets.next_batch(POLL_INTERVAL)
            except SfuStoppedError:
                return
            for packet in batch:
                yield packet

    async def wait_connected(self) -> None:
        """Wait until ICE and DTLS are up; bound it with `asyncio.timeout`."""
        # The state lives on the media thread, which has no asyncio-aware signal to await.
        while not await asyncio.to_thread(lambda: self.native.connected):  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    async def aclose(self) -> None:
        """Stop the peer's thread. Idempotent."""
        await asyncio.to_thread(self.native.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def check_socket_buffers(sfu: Sfu) -> None:
    """Warn (naming the sysctl to raise) when the kernel gave the media sockets less receive
    buffer than the SFU asked for; called once the SFU has started serving."""
    # Linux reports twice what it set aside, and caps what it sets aside at net.core.rmem_max.
    receive = min(granted for granted, _ in sfu.native.socket_buffer_sizes) // 2
    if receive < WANTED_SOCKET_BUFFER:
        log.warning(
            "SFU media sockets got a %.2f MiB receive buffer, not the 4 MiB asked: bursts will "
            "drop packets under load; raise it with `sysctl -w net.core.rmem_max=%d`",
            receive / (1024 * 1024),
            WANTED_SOCKET_BUFFER,
        )
