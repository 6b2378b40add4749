"""Interop with headless Chromium: it joins from a small test page, receives a native peer's
tone (its getStats shows packets received and an audio level above zero), and the native peer
receives Chromium's fake microphone.

The page talks to a throwaway signaling server in this test (join, poll for the SFU's offers,
answer, report getStats); no WebDriver is needed. Skipped when no `chromium` is installed
(Debian package `chromium`, see scripts/test.sh).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aioice.ice import get_host_addresses

from tests.voice.conftest import tone
from voicechat._native.dsp import OpusDecoder, OpusEncoder, audio_level_dbov
from voicechat._native.sfu import Peer, ReceivedPacket, Sfu, SfuConfig

PAGE = (Path(__file__).parent / "chromium_page.html").read_bytes()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FRAME = 960

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


class Signaling(ThreadingHTTPServer):
    """The page's signaling API, over the native SFU (thread-safe, blocking calls)."""

    def __init__(self, sfu: Sfu) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.sfu = sfu
        self.report: dict[str, Any] | None = None
        self.reported = threading.Event()


class Handler(BaseHTTPRequestHandler):
    server: Signaling

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, body: object, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/":
            self._reply(PAGE, "text/html")
        elif self.path == "/offer":
            self._reply({"sdp": self.server.sfu.pending_offer("chromium")})
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        sfu = self.server.sfu
        if self.path == "/join":
            self._reply({"sdp": sfu.join("room", "chromium", body["sdp"])})
        elif self.path == "/answer":
            sfu.accept_answer("chromium", body["sdp"])
            self._reply({})
        elif self.path == "/report":
            self.server.report = body
            self.server.reported.set()
            self._reply({})
        else:
            self.send_error(404)


@pytest.fixture
def sfu() -> Iterator[Sfu]:
    addresses = get_host_addresses(use_ipv4=True, use_ipv6=False)
    # Chromium does not use loopback candidates; a LAN address works for it and for us.
    with Sfu(SfuConfig(bind_ip=addresses[0] if addresses else "127.0.0.1", media_port=0)) as sfu:
        sfu.create_room("room")
        yield sfu


def test_chromium_and_a_native_peer_hear_each_other(sfu: Sfu, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    bot = Peer(bind_ip=sfu.local_addr[0])
    bot.accept_answer(sfu.join("room", "bot", bot.offer()))
    stop = threading.Event()
    received: list[ReceivedPacket] = []

    def bot_media() -> None:
        # Answers the SFU's offers for the bot, sends a 1 kHz tone, keeps what it hears.
        encoder = OpusEncoder()
        n = 0
        start = time.monotonic()
        while not stop.is_set():
            for event in sfu.poll_events(0.0):
                if event.kind == "offer" and event.participant_id == "bot" and event.sdp:
                    sfu.accept_answer("bot", bot.accept_offer(event.sdp))
            pcm = tone(1_000.0, n * FRAME, FRAME)
            bot.send(encoder.encode(pcm), audio_level_dbov(pcm.tobytes()))
            n += 1
            while (packet := bot.recv(0.0)) is not None:
                received.append(packet)
            time.sleep(max(0.0, start + n * 0.02 - time.monotonic()))

    media = threading.Thread(target=bot_media)
    media.start()
    server = Signaling(sfu)
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    browser = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"http://127.0.0.1:{server.server_address[1]}/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert server.reported.wait(60), "the page never reported"
    finally:
        browser.terminate()
        browser.wait(10)
        stop.set()
        media.join()
        server.shutdown()
        serving.join()
        server.server_close()
        bot.close()
    report = server.report
    assert report is not None
    assert "error" not in report, report["error"]
    assert report["state"] == "connected", report
    # Chromium got exactly one remote track, the bot's, and heard it.
    assert report["tracks"] == ["bot"], report
    inbound = [s for s in report["inbound"] if s["trackIdentifier"] == "bot"]
    assert inbound, report
    assert inbound[0]["packetsReceived"] > 100, report
    assert inbound[0]["audioLevel"] > 0 or inbound[0]["totalAudioEnergy"] > 0, report
    assert report["packetsSent"] > 100, report
    # The bot got Chromium's fake microphone: its beeps, not silence.
    from_chromium = [p for p in received if p.participant_id == "chromium" and p.payload]
    assert len(from_chromium) > 100, len(received)
    decoder = OpusDecoder()
    pcm = np.concatenate([decoder.decode(p.payload) for p in from_chromium])
    assert np.abs(pcm.astype(np.int32)).max() > 1_000
