"""A fleet of authenticated gateway sockets spread over client processes, for the benches.

The sockets' clients do not run in the benchmark's own process: each of `processes` workers
(spawned, each with its own uvloop event loop) holds its share of the sockets, so that the
figures are the server's and not one client loop's backlog, and so that no process (server or
client) needs more descriptors than the sandbox's ceiling allows.

The client is a minimal RFC 6455 client on a raw asyncio protocol: an upgrade request, masked
text frames out, unmasked frames in, pongs for the server's pings. A full client library parses
each frame in several Python layers (~50 µs a frame): with 1,000 sockets on one core that
backlog would be most of what the delivery benchmark measured. A delivery is stamped when its
bytes reach the client's process (`data_received`), before any parsing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import multiprocessing
import os
import re
import resource
import time
from multiprocessing.connection import Connection
from typing import Any, cast
from urllib.parse import urlsplit

#: `"content":"<marker>"` in a `message.new` frame (markers are `bench-<n>`).
_MARKER = re.compile(rb'"content":"(bench-\d+)"')
_TEXT, _CLOSE, _PING, _PONG = 0x1, 0x8, 0x9, 0xA


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked, unfragmented client frame (RFC 6455 §5.2)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = bytes([0x80 | opcode, 0x80 | size])
    elif size < 1 << 16:
        header = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
    keys = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(size, "big")
    return header + mask + masked


class _Client(asyncio.Protocol):
    """One socket: handshake, `auth`, then record when each marked message arrives."""

    def __init__(self, fleet: _WorkerFleet, request: bytes, auth: bytes) -> None:
        self.fleet = fleet
        self.request = request
        self.auth = auth
        self.buffer = bytearray()
        self.upgraded = False
        self.admitted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fleet.closed += 1
        if not self.admitted.done():
            self.admitted.set_exception(ConnectionError("closed before auth"))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.admitted.set_exception(ConnectionError(bytes(buffer[:200]).decode()))
                return
            del buffer[: end + 4]
            self.upgraded = True
            assert self.transport is not None
            self.transport.write(self.auth)
        while len(buffer) >= 2:
            size = buffer[1] & 0x7F
            start = 2
            if size == 126:
                if len(buffer) < 4:
                    return
                size, start = int.from_bytes(buffer[2:4], "big"), 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                size, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + size:
                return
            opcode = buffer[0] & 0x0F
            payload = bytes(buffer[start : start + size])
            del buffer[: start + size]
            if opcode == _TEXT:
                self._text(payload, now)
            elif opcode == _PING:
                assert self.transport is not None
                if not self.transport.is_closing():
                    self.transport.write(_client_frame(_PONG, payload))
            elif opcode == _CLOSE:
                assert self.transport is not None
                self.transport.close()

    def _text(self, payload: bytes, now: float) -> None:
        if b'"message.new"' in payload:
            found = _MARKER.search(payload)
            if found is not None:
                self.fleet.arrived(found.group(1).decode(), now)
        elif not self.admitted.done() and b'"id":1' in payload:
            if b'"result"' in payload:
                self.admitted.set_result(None)
            else:
                self.admitted.set_exception(ConnectionError(payload.decode()))


class _WorkerFleet:
    """The sockets of one worker process."""

    def __init__(self, conn: Connection, count: int) -> None:
        self.conn = conn
        self.count = count
        self.clients: list[_Client] = []
        self.arrivals: dict[str, list[float]] = {}
        self.closed = 0

    def arrived(self, marker: str, when: float) -> None:
        times = self.arrivals.setdefault(marker, [])
        times.append(when)
        if len(times) == self.count:
            self.conn.send(("arrived", marker, self.arrivals.pop(marker)))

    async def open(self, url: str, tokens: list[str], concurrency: int) -> None:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        gate = asyncio.Semaphore(concurrency)
        loop = asyncio.get_running_loop()

        async def one(i: int) -> None:
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            auth = json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "auth", "params": {"token": tokens[i]}}
            ).encode()
            async with gate:
                _transport, client = await loop.create_connection(
                    lambda: _Client(self, request, _client_frame(_TEXT, auth)), host, port
                )
                async with asyncio.timeout(60):
                    await client.admitted
            self.clients.append(client)

        await asyncio.gather(*(one(i) for i in range(self.count)))


def _worker(
    conn: Connection, url: str, tokens: list[str], count: int, concurrency: int
) -> None:  # pragma: no cover (runs in the spawned process)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import uvloop

    async def main() -> None:
        fleet = _WorkerFleet(conn, count)
        try:
            await fleet.open(url, tokens, concurrency)
        except Exception as exc:
            conn.send(("failed", repr(exc)))
            return
        conn.send(("ready", len(fleet.clients)))
        loop = asyncio.get_running_loop()
        stop = loop.create_future()

        def command() -> None:
            while conn.poll():
                message = conn.recv()
                if message[0] == "stats":
                    conn.send(("stats", len(fleet.clients), fleet.closed))
                elif message[0] == "close" and not stop.done():
                    stop.set_result(None)

        loop.add_reader(conn.fileno(), command)
        await stop
        for client in fleet.clients:
            if client.transport is not None and not client.transport.is_closing():
                client.transport.write(_client_frame(_CLOSE, (1000).to_bytes(2, "big")))
                client.transport.close()
        await asyncio.sleep(0.5)
        conn.send(("closed", fleet.closed))

    uvloop.run(main())


class ProcessFleet:
    """`count` authenticated sockets to `url`, split over `processes` client processes.

    Args:
        url: the gateway's `ws://` address.
        tokens: one access token per socket is taken round-robin from these.
        count: how many sockets.
        processes: how many client processes share them.
        concurrency: sockets each process opens at a time.
    """

    def __init__(
        self, url: str, tokens: list[str], count: int, processes: int, concurrency: int = 50
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.workers: list[Any] = []
        self.count = count
        shares = [
            count // processes + (1 if i < count % processes else 0) for i in range(processes)
        ]
        offset = 0
        for share in shares:
            ours, theirs = context.Pipe()
            share_tokens = [tokens[(offset + i) % len(tokens)] for i in range(share)]
            offset += share
            worker = context.Process(
                target=_worker, args=(theirs, url, share_tokens, share, concurrency), daemon=True
            )
            worker.start()
            self.conns.append(ours)
            self.workers.append(worker)

    async def _recv(self, conn: Connection, seconds: float) -> Any:
        if not await asyncio.to_thread(conn.poll, seconds):
            raise TimeoutError("a client process did not answer")
        return conn.recv()

    async def ready(self, seconds: float = 600) -> int:
        """Wait until every process has its sockets authenticated; how many in all."""
        total = 0
        for conn in self.conns:
            message = await self._recv(conn, seconds)
            if message[0] != "ready":
                raise RuntimeError(f"a client process failed: {message}")
            total += message[1]
        return int(total)

    async def arrivals(self, marker: str, seconds: float = 30) -> list[float]:
        """When each socket received the `message.new` whose content is `marker`."""
        times: list[float] = []
        for conn in self.conns:
            message = await self._recv(conn, seconds)
            assert message[:2] == ("arrived", marker), message
            times.extend(message[2])
        return times

    async def stats(self) -> tuple[int, int]:
        """(sockets opened, sockets the server has closed since) over every process."""
        opened = closed = 0
        for conn in self.conns:
            conn.send(("stats",))
            message = await self._recv(conn, 30)
            opened += message[1]
            closed += message[2]
        return opened, closed

    async def close(self) -> None:
        """Close every socket and end the processes."""
        for conn in self.conns:
            conn.send(("close",))
        for conn in self.conns:
            # A process that failed while closing has said so on its stderr already.
            with contextlib.suppress(EOFError, OSError):
                if await asyncio.to_thread(conn.poll, 30):
                    conn.recv()
        for worker in self.workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
