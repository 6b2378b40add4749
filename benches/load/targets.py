"""The three forwarding targets under the same load: our SFU, a bare UDP relay, Janus.

Each `run_*` starts the target in its own process, joins `scenario.participants` clients in
rooms, lets the speakers send at each rate for `seconds`, and charges the target's CPU (from
/proc) per forwarded packet. One receiver per room (its last member) hands every packet to a
latency sampler. The other native peers still receive and decrypt everything on their own
threads, they are only not read from Python (their bounded queues drop), which keeps the
generator's CPU down on a 2-core machine; the relay's other sockets are drained by one thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benches.load.common import (
    Result,
    Scenario,
    cpu_seconds,
    latency_ns,
    payload,
    rss_bytes,
    socket_drops,
    udp_receive_drops,
)
from benches.native import relay_binary
from voicechat._native.sfu import Peer

ROOT = Path(__file__).resolve().parents[2]
AUDIO_LEVEL = 30


class Sampler:
    """Threads that read packets from a few receivers and record each one's latency."""

    def __init__(self, reads: Sequence[Callable[[], bytes | None]]) -> None:
        self.latencies: list[int] = []
        self._recording = False
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(r,), daemon=True) for r in reads]
        for thread in self._threads:
            thread.start()

    def _loop(self, read: Callable[[], bytes | None]) -> None:
        while not self._stop.is_set():
            try:
                data = read()
            except (OSError, RuntimeError):
                return
            if data is not None and self._recording:
                self.latencies.append(latency_ns(data))

    def record(self, on: bool) -> None:
        self._recording = on

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(1.0)


class Drain:
    """One thread reading and discarding whatever reaches a set of relay sockets.

    The native peers read every packet on their own threads, so a forwarder's sends to them
    wake a sleeping reader; draining the relay's other receivers keeps that cost in the floor.
    """

    def __init__(self, sockets: Sequence[socket.socket]) -> None:
        self._selector = selectors.DefaultSelector()
        for sock in sockets:
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                with contextlib.suppress(BlockingIOError):
                    while True:
                        sock.recv(2048)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1.0)
        self._selector.close()


def pace(send: Callable[[], None], rate: int, seconds: float) -> float:
    """Calls `send` (one packet per speaker) `rate` times a second; returns the time it took."""
    interval = 1.0 / rate
    start = time.monotonic()
    due = start
    for _ in range(round(rate * seconds)):
        send()
        due += interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return time.monotonic() - start


def measure(
    result: Result,
    *,
    send: Callable[[], None],
    forwarded: Callable[[], int],
    target_cpu: Callable[[], float],
    sampler: Sampler,
    seconds: float,
    target_port: int | None = None,
) -> Result:
    """One measured phase: counters before and after `seconds` of paced sending.

    `target_port`, if given, is the target's UDP port: the kernel's drops at its socket are
    told apart from those at the generator's (the receivers').
    """
    generator = os.getpid()
    drops_before = None if target_port is None else socket_drops(target_port)
    before = (forwarded(), target_cpu(), cpu_seconds(generator), udp_receive_drops())
    sampler.record(True)
    elapsed = pace(send, result.rate, seconds)
    time.sleep(0.2)  # let the last packets through before reading the counters
    sampler.record(False)
    after = (forwarded(), target_cpu(), cpu_seconds(generator), udp_receive_drops())
    result.seconds = elapsed
    result.forwarded = after[0] - before[0]
    result.target_cpu = after[1] - before[1]
    result.generator_cpu = after[2] - before[2]
    result.udp_drops = after[3] - before[3]
    if target_port is not None and drops_before is not None:
        result.target_drops = socket_drops(target_port) - drops_before
    result.latencies_ns = list(sampler.latencies)
    sampler.latencies.clear()
    return result


# --- our SFU ------------------------------------------------------------------------------


class SfuProcess:
    """`benches/load/sfu_server.py` in a child process, driven over its stdin/stdout."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benches.load.sfu_server"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.local_addr = self._reply()

    def _reply(self) -> Any:
        assert self.process.stdout is not None
        reply = json.loads(self.process.stdout.readline())
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply["ok"]

    def call(self, op: str, **args: object) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.process.stdin.flush()
        return self._reply()

    def close(self) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(10)
        self.process.stdout.close()


def negotiate(sfu: SfuProcess, peers: dict[str, Peer], expected_tracks: int) -> None:
    """Answers the SFU's offers until every peer is connected and none is pending."""
    deadline = time.monotonic() + 120
    quiet_sweeps = 0
    while quiet_sweeps < 3:
        if time.monotonic() > deadline:
            raise TimeoutError("negotiation did not settle in 120 s")
        answered = 0
        for name, peer in peers.items():
            offer = sfu.call("pending_offer", participant=name)
            if offer is not None:
                sfu.call("accept_answer", participant=name, sdp=peer.accept_offer(offer))
                answered += 1
        settled = answered == 0 and sfu.call("connected", participants=list(peers))
        quiet_sweeps = quiet_sweeps + 1 if settled else 0
        time.sleep(0.3)
    del expected_tracks


def run_sfu(scenario: Scenario, rates: Sequence[int], seconds: float) -> list[Result]:
    sfu = SfuProcess()
    pid = sfu.process.pid
    peers: dict[str, Peer] = {}
    try:
        time.sleep(0.5)
        rss_idle = rss_bytes(pid)
        rooms: list[list[str]] = []
        for r in range(scenario.rooms):
            room = f"room{r}"
            sfu.call("create_room", room=room, limit=scenario.size)
            names = [f"r{r}p{i}" for i in range(scenario.size)]
            rooms.append(names)
            for name in names:
                peer = Peer(seed=len(peers) + 1)
                peers[name] = peer
                peer.accept_answer(sfu.call("join", room=room, participant=name, sdp=peer.offer()))
        negotiate(sfu, peers, scenario.size - 1)
        rss = (rss_bytes(pid) - rss_idle) / scenario.participants
        speakers = [peers[name] for room in rooms for name in room[: scenario.speakers]]
        samples = [peers[room[-1]] for room in rooms]

        def read(peer: Peer) -> Callable[[], bytes | None]:
            def one() -> bytes | None:
                packet = peer.recv(0.1)
                return None if packet is None else packet.payload

            return one

        def send() -> None:
            for speaker in speakers:
                speaker.send(payload(), AUDIO_LEVEL)

        sampler = Sampler([read(p) for p in samples])
        results = []
        try:
            pace(send, 50, 1.0)  # warm-up: every track flowing
            for rate in rates:
                results.append(
                    measure(
                        Result("voicechat SFU (str0m)", scenario.name, rate, note="1 media thread"),
                        send=send,
                        forwarded=lambda: int(sfu.call("forwarded", participants=list(peers))),
                        target_cpu=lambda: cpu_seconds(pid, "voicechat-sfu"),
                        sampler=sampler,
                        seconds=seconds,
                        target_port=int(sfu.local_addr[1]),
                    )
                )
                results[-1].rss_per_participant = rss
        finally:
            sampler.stop()
        return results
    finally:
        for peer in peers.values():
            peer.close()
        sfu.close()


# --- bare UDP relay -----------------------------------------------------------------------


def run_relay(scenario: Scenario, rates: Sequence[int], seconds: float) -> list[Result]:
    relay = subprocess.Popen(  # noqa: S603 (our own binary)
        [relay_binary(), "127.0.0.1:0"], stdout=subprocess.PIPE, text=True
    )
    sockets: list[socket.socket] = []
    try:
        assert relay.stdout is not None
        host, port = relay.stdout.readline().split()[1].rsplit(":", 1)
        address = (host, int(port))
        rss_idle = rss_bytes(relay.pid)
        rooms: list[list[socket.socket]] = []
        for r in range(scenario.rooms):
            members = []
            for _ in range(scenario.size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind(("127.0.0.1", 0))
                sock.settimeout(0.1)
                sock.sendto(f"JOIN room{r}".encode(), address)
                members.append(sock)
                sockets.append(sock)
            rooms.append(members)
        control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        control.bind(("127.0.0.1", 0))
        control.settimeout(2.0)
        sockets.append(control)

        def forwarded() -> int:
            control.sendto(b"STATS", address)
            return int(control.recv(64).split()[1])

        forwarded()  # every JOIN before it has been handled
        rss = (rss_bytes(relay.pid) - rss_idle) / scenario.participants
        speakers = [sock for room in rooms for sock in room[: scenario.speakers]]

        def read(sock: socket.socket) -> Callable[[], bytes | None]:
            def one() -> bytes | None:
                try:
                    return sock.recv(2048)
                except TimeoutError:
                    return None

            return one

        def send() -> None:
            for speaker in speakers:
                speaker.sendto(payload(), address)

        sampler = Sampler([read(room[-1]) for room in rooms])
        drain = Drain([sock for room in rooms for sock in room[:-1]])
        results = []
        try:
            pace(send, 50, 1.0)
            for rate in rates:
                results.append(
                    measure(
                        Result("bare UDP relay (recvmmsg/sendmmsg)", scenario.name, rate),
                        send=send,
                        forwarded=forwarded,
                        target_cpu=lambda: cpu_seconds(relay.pid),
                        sampler=sampler,
                        seconds=seconds,
                        target_port=address[1],
                    )
                )
                results[-1].rss_per_participant = rss
        finally:
            sampler.stop()
            drain.stop()
        return results
    finally:
        for sock in sockets:
            sock.close()
        relay.terminate()
        relay.wait(10)
        if relay.stdout is not None:
            relay.stdout.close()


# --- latency reference: native peer to native peer, nothing in between ----------------------


def run_direct(seconds: float, rate: int = 50) -> list[Result]:
    """Two native peers connected to each other: the latency of the peer stack alone.

    Subtracting it from a target's latency (both measured from the sender's `send` call to the
    receiver's Python `recv`) leaves what forwarding adds.
    """
    sender, receiver = Peer(seed=1), Peer(seed=2)
    try:
        sender.accept_answer(receiver.accept_offer(sender.offer()))
        deadline = time.monotonic() + 20
        while not (sender.connected and receiver.connected):
            if time.monotonic() > deadline:
                raise TimeoutError("the two peers did not connect")
            time.sleep(0.05)

        def read() -> bytes | None:
            packet = receiver.recv(0.1)
            return None if packet is None else packet.payload

        sampler = Sampler([read])
        try:
            pace(lambda: sender.send(payload(), AUDIO_LEVEL), rate, 1.0)
            return [
                measure(
                    Result("native peer → native peer, no SFU", "1 pair (latency reference)", rate),
                    send=lambda: sender.send(payload(), AUDIO_LEVEL),
                    forwarded=lambda: receiver.stats()["packets_received"],
                    target_cpu=lambda: 0.0,
                    sampler=sampler,
                    seconds=seconds,
                )
            ]
        finally:
            sampler.stop()
    finally:
        sender.close()
        receiver.close()
