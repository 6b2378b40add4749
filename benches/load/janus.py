"""Janus (Debian's `janus` 1.1.2) VideoRoom in audio-only rooms under the benchmark's load.

Janus runs from a generated config directory with only the HTTP transport and the VideoRoom
plugin, one event loop (`event_loops = 1`, like our SFU's one media thread; Janus's default is
a thread per PeerConnection), no STUN/TURN. Unlike our SFU, a VideoRoom participant that both
speaks and listens needs two PeerConnections: speakers publish (one native `Peer` each, its
offer configures the publisher), and every participant subscribes to its room's other speakers
with one multistream subscriber (Janus offers, the native `Peer` answers).

libnice leaves loopback out of its host candidates, so Janus and the peers use the machine's
first non-loopback IPv4 address.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benches.load.common import Result, Scenario, cpu_seconds, payload, rss_bytes
from benches.load.targets import AUDIO_LEVEL, Sampler, measure, pace
from voicechat._native.sfu import Peer

PLUGINS = Path("/usr/lib/x86_64-linux-gnu/janus")
HTTP_PORT = 18088


def host_ip() -> str:
    """The address the default route leaves from (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.254", 9))
        return str(probe.getsockname()[0])


def write_config(root: Path, ip: str) -> Path:
    for folder in ("conf", "plugins", "transports", "none"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "plugins" / "libjanus_videoroom.so").symlink_to(
        PLUGINS / "plugins" / "libjanus_videoroom.so"
    )
    (root / "transports" / "libjanus_http.so").symlink_to(
        PLUGINS / "transports" / "libjanus_http.so"
    )
    conf = root / "conf"
    (conf / "janus.jcfg").write_text(
        f"""general: {{
  configs_folder = "{conf}"
  plugins_folder = "{root}/plugins"
  transports_folder = "{root}/transports"
  events_folder = "{root}/none"
  loggers_folder = "{root}/none"
  debug_level = 3
  session_timeout = 0
  event_loops = 1
}}
media: {{ rtp_port_range = "40000-60000" }}
nat: {{ ice_enforce_list = "{ip}" }}
"""
    )
    (conf / "janus.transport.http.jcfg").write_text(
        f"""general: {{ http = true, port = {HTTP_PORT}, ip = "127.0.0.1", base_path = "/janus" }}
admin: {{ admin_http = false }}
"""
    )
    (conf / "janus.plugin.videoroom.jcfg").write_text("general: {}\n")
    return conf


class JanusApi:
    """Janus's HTTP API: requests, and long-polled events matched by transaction."""

    def __init__(self) -> None:
        self.base = f"http://127.0.0.1:{HTTP_PORT}/janus"
        self._transactions = 0
        self.session = int(self._post(self.base, {"janus": "create"})["data"]["id"])
        self._events: list[dict[str, Any]] = []

    def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        self._transactions += 1
        body = {**body, "transaction": str(self._transactions)}
        request = urllib.request.Request(  # noqa: S310 (a fixed http://127.0.0.1 URL)
            url, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            reply: dict[str, Any] = json.loads(response.read())
        if reply.get("janus") == "error":
            raise RuntimeError(reply["error"])
        reply["_transaction"] = body["transaction"]
        return reply

    def attach(self) -> int:
        url = f"{self.base}/{self.session}"
        return int(
            self._post(url, {"janus": "attach", "plugin": "janus.plugin.videoroom"})["data"]["id"]
        )

    def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Sends a plugin message; returns its synchronous reply or its event."""
        request: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        reply = self._post(f"{self.base}/{self.session}/{handle}", request)
        if reply.get("janus") != "ack":
            return reply
        return self._event(reply["_transaction"])

    def _event(self, transaction: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for event in self._events:
                if event.get("transaction") == transaction:
                    self._events.remove(event)
                    data = event["plugindata"]["data"]
                    if "error" in data:
                        raise RuntimeError(data["error"])
                    return event
            url = f"{self.base}/{self.session}?maxev=20"
            with urllib.request.urlopen(url, timeout=35) as response:  # noqa: S310
                events = json.loads(response.read())
            self._events += events if isinstance(events, list) else [events]
        raise TimeoutError(f"no Janus event for transaction {transaction}")


def wait_connected(peers: Sequence[Peer], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.connected for p in peers):
        if time.monotonic() > deadline:
            missing = sum(not p.connected for p in peers)
            raise TimeoutError(f"{missing} of {len(peers)} peers not connected to Janus")
        time.sleep(0.2)


def run_janus(scenario: Scenario, rates: Sequence[int], seconds: float) -> list[Result]:
    janus_binary = shutil.which("janus")
    if janus_binary is None:
        raise FileNotFoundError("janus is not installed (apt-get install janus)")
    ip = host_ip()
    root = Path(tempfile.mkdtemp(prefix="voicechat-janus-bench-"))
    conf = write_config(root, ip)
    log = (root / "janus.log").open("w")
    janus = subprocess.Popen(  # noqa: S603 (the installed janus, our generated config)
        [janus_binary, "-F", str(conf), "-C", str(conf / "janus.jcfg")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    publishers: list[Peer] = []
    subscribers: list[Peer] = []
    try:
        api = _connect()
        rss_idle = rss_bytes(janus.pid)
        samples = []
        for r in range(scenario.rooms):
            room = 1000 + r
            admin = api.attach()
            api.message(
                admin,
                {
                    "request": "create",
                    "room": room,
                    "publishers": scenario.speakers,
                    "audiocodec": "opus",
                    "bitrate": 64_000,
                },
            )
            feeds = []
            for s in range(scenario.speakers):
                peer = Peer(bind_ip=ip, seed=len(publishers) + 1)
                feed = room * 100 + s + 1
                event = api.message(
                    api.attach(),
                    {
                        "request": "joinandconfigure",
                        "ptype": "publisher",
                        "room": room,
                        "id": feed,
                        "audio": True,
                        "video": False,
                    },
                    {"type": "offer", "sdp": peer.offer()},
                )
                peer.accept_answer(event["jsep"]["sdp"])
                publishers.append(peer)
                feeds.append(feed)
            wait_connected(publishers)
            for member in range(scenario.size):
                others = [f for i, f in enumerate(feeds) if i != member]
                peer = Peer(bind_ip=ip, seed=10_000 + len(subscribers))
                handle = api.attach()
                event = api.message(
                    handle,
                    {
                        "request": "join",
                        "ptype": "subscriber",
                        "room": room,
                        "streams": [{"feed": f} for f in others],
                    },
                )
                answer = peer.accept_offer(event["jsep"]["sdp"])
                api.message(handle, {"request": "start"}, {"type": "answer", "sdp": answer})
                subscribers.append(peer)
            samples.append(subscribers[-1])
        wait_connected(subscribers)
        rss = (rss_bytes(janus.pid) - rss_idle) / scenario.participants

        def read(peer: Peer) -> Callable[[], bytes | None]:
            def one() -> bytes | None:
                packet = peer.recv(0.1)
                return None if packet is None else packet.payload

            return one

        def send() -> None:
            for speaker in publishers:
                speaker.send(payload(), AUDIO_LEVEL)

        def forwarded() -> int:
            return sum(p.stats()["packets_received"] for p in subscribers)

        sampler = Sampler([read(p) for p in samples])
        results = []
        try:
            pace(send, 50, 1.0)
            for rate in rates:
                results.append(
                    measure(
                        Result("Janus 1.1.2 VideoRoom", scenario.name, rate, note="event_loops=1"),
                        send=send,
                        forwarded=forwarded,
                        target_cpu=lambda: cpu_seconds(janus.pid),
                        sampler=sampler,
                        seconds=seconds,
                    )
                )
                results[-1].rss_per_participant = rss
        finally:
            sampler.stop()
        shutil.rmtree(root)  # kept, with janus.log, when the run fails
        return results
    finally:
        for peer in publishers + subscribers:
            peer.close()
        janus.terminate()
        janus.wait(10)
        log.close()


def _connect() -> JanusApi:
    deadline = time.monotonic() + 20
    while True:
        try:
            return JanusApi()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
