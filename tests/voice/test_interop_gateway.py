"""Interop through the real gateway: standard WebRTC clients (aiortc, headless Chromium) log in
over REST, authenticate on `/ws` of a live `voicechat serve` and do all their voice signaling
with the `voice.*` JSON-RPC methods of SPEC §4, as a third-party client would.

Neither client uses the SDK: the aiortc clients speak JSON-RPC through a bare `websockets`
connection (:class:`Rpc`), Chromium through the browser's own `WebSocket` in
`chromium_gateway_page.html`. Only the bot next to Chromium is an SDK `VoiceCall`.

aioice leaves 127.0.0.1 out of its host candidates and Chromium does not use loopback
candidates, so the server's SFU is bound to, and advertises, the first non-loopback IPv4
address aioice returns (`VOICECHAT_MEDIA_BIND_IP`, `VOICECHAT_PUBLIC_IP`). The gateway checks no
`Origin`, so a page served from another local port may open the socket.

Both interop tests run twice: with the SFU inside `voicechat serve` and with it in a separate
`voicechat voice` node (`VOICECHAT_VOICE_MODE=remote`); clients cannot tell the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import av
import httpx
import numpy as np
import pytest
from aioice.ice import get_host_addresses
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from numpy.typing import NDArray
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import LiveServer
from tests.voice.conftest import dominant_frequency, share_at, tone
from tests.voice.test_aiortc import Tone
from voicechat._native.dsp import OpusDecoder, OpusEncoder, audio_level_dbov
from voicechat.sdk import Client
from voicechat.sdk.voice import VoiceCall

pytestmark = pytest.mark.slow

PAGE = (Path(__file__).parent / "chromium_gateway_page.html").read_bytes()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PASSWORD = "correct horse battery"
TONES = {"alice": 440.0, "bob": 660.0}
FRAME = 960  # 20 ms at 48 kHz

#: Runs a test with the SFU in the API process and in a separate voice node.
BOTH_MODES = pytest.mark.parametrize("voice_server", ["embedded", "remote"], indirect=True)

#: Handles one server notification's params.
Handler = Callable[[dict[str, Any]], Awaitable[None]]


def lan_ip() -> str:
    """The address aioice offers first (it never offers 127.0.0.1)."""
    addresses = get_host_addresses(use_ipv4=True, use_ipv6=False)
    assert addresses, "these tests need a non-loopback IPv4 address (aioice skips loopback)"
    return addresses[0]


@pytest.fixture
def voice_server(
    request: pytest.FixtureRequest,
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> Iterator[LiveServer]:
    """A live server whose SFU listens on, and advertises, the LAN address: inside the API
    process (`embedded`, the default) or in a `voicechat voice` node of its own (`remote`, when
    a test parametrizes the fixture indirectly)."""
    mode = getattr(request, "param", "embedded")
    media = {
        "VOICECHAT_VALKEY_URL": clean_valkey,
        "VOICECHAT_MEDIA_PORT": "0",
        "VOICECHAT_MEDIA_BIND_IP": lan_ip(),
        "VOICECHAT_PUBLIC_IP": lan_ip(),
    }
    node: subprocess.Popen[bytes] | None = None
    if mode == "remote":
        with (tmp_path / "voice-node.log").open("wb") as log_file:
            node = subprocess.Popen(
                [sys.executable, "-m", "voicechat", "voice"],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, "VOICECHAT_LOG_FORMAT": "json", **media},
            )
    try:
        server = live_server_factory(
            {
                **media,
                "VOICECHAT_DATABASE_URL": database_url,
                "VOICECHAT_DATA_DIR": str(tmp_path / "live-data"),
                "VOICECHAT_VOICE_MODE": mode,
            }
        )
        # Healthy means a voice node is up too, in remote mode (its own `voice` component).
        components = httpx.get(f"{server.base_url}/health").json()["components"]
        assert ("voice" in components) == (mode == "remote"), components
        yield server
    finally:
        if node is not None:
            node.terminate()
            node.wait(30)


@dataclass(frozen=True)
class Account:
    """A user registered and logged in over REST."""

    user_id: str
    access_token: str


async def account(http: httpx.AsyncClient, name: str) -> Account:
    """Register `name`, then log in with REST to get a fresh access token."""
    registered = await http.post("/auth/register", json={"username": name, "password": PASSWORD})
    assert registered.status_code == 201, registered.text
    login = await http.post("/auth/login", json={"username": name, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return Account(registered.json()["user"]["id"], login.json()["access_token"])


async def voice_channel(http: httpx.AsyncClient, owner: Account, name: str) -> str:
    """Create a voice channel as `owner` (the administrator); returns its id."""
    created = await http.post(
        "/channels",
        json={"name": name, "type": "voice"},
        headers={"Authorization": f"Bearer {owner.access_token}"},
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def eventually(check: Callable[[], bool], what: str, within: float = 15.0) -> None:
    """Poll `check` until it holds; fail saying `what` did not happen."""
    try:
        async with asyncio.timeout(within):
            while not check():  # noqa: ASYNC110 (polling what other tasks collect)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"within {within} s: {what}") from None


class RpcError(Exception):
    """A JSON-RPC error answer."""


class Rpc:
    """A bare JSON-RPC 2.0 client of `/ws`: requests, and notifications kept in order.

    Handlers run one at a time, in arrival order, on their own task (a handler may make
    requests, whose answers the reader task delivers meanwhile).
    """

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.handlers: dict[str, Handler] = {}
        self.notifications: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._dispatch())]

    @classmethod
    async def connect(cls, base_url: str, token: str) -> Rpc:
        """Open `/ws` and authenticate with an access token."""
        ws = await connect(base_url.replace("http://", "ws://") + "/ws")
        rpc = cls(ws)
        await rpc.request("auth", {"token": token})
        return rpc

    async def request(self, method: str, params: dict[str, Any], within: float = 10.0) -> Any:
        """Send a request and wait for its answer (an error answer raises RpcError)."""
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        frame = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        await self._ws.send(json.dumps(frame))
        try:
            async with asyncio.timeout(within):
                return await future
        except TimeoutError:
            raise AssertionError(f"no answer to {method} within {within} s") from None
        finally:
            self._pending.pop(request_id, None)

    def seen(self, method: str, **params: Any) -> bool:
        """Whether a notification `method` with these params arrived."""
        return any(
            n["method"] == method and all(n["params"].get(k) == v for k, v in params.items())
            for n in self.notifications
        )

    def sees(self, method: str, **params: Any) -> Callable[[], bool]:
        """:meth:`seen` as a check for :func:`eventually`."""
        return lambda: self.seen(method, **params)

    async def _read(self) -> None:
        async for raw in self._ws:
            frame = json.loads(raw)
            if "method" in frame:
                self.notifications.append(frame)
                self._queue.put_nowait(frame)
                continue
            future = self._pending.get(frame.get("id"))
            if future is None or future.done():
                continue
            if "error" in frame:
                future.set_exception(RpcError(frame["error"]))
            else:
                future.set_result(frame["result"])

    async def _dispatch(self) -> None:
        while True:
            frame = await self._queue.get()
            handler = self.handlers.get(frame["method"])
            if handler is None:
                continue
            try:
                await handler(frame["params"])
            except Exception as exc:  # reported by the test through `errors`
                self.errors.append(exc)

    async def close(self) -> None:
        """Close the socket and stop the tasks."""
        await self._ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class AiortcUser:
    """An aiortc peer connection signaled over the gateway, sending a tone; keeps the PCM it
    receives per remote track (the track id is the sender's user id)."""

    def __init__(self, name: str, account: Account, rpc: Rpc) -> None:
        self.name = name
        self.user_id = account.user_id
        self.rpc = rpc
        self.received: dict[str, list[NDArray[np.int16]]] = {}
        self.offers: list[str] = []
        self._readers: list[asyncio.Task[None]] = []
        self._channel = ""
        self.pc = self._connection()
        rpc.handlers["voice.offer"] = self._on_offer

    def _connection(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(Tone(TONES[self.name]))
        pc.on("track", self._on_track)
        return pc

    async def join(self, channel_id: str) -> dict[str, Any]:
        """`voice.join`, then our offer with `voice.offer` and its answer applied."""
        self._channel = channel_id
        joined: dict[str, Any] = await self.rpc.request("voice.join", {"channel_id": channel_id})
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await self.rpc.request(
            "voice.offer", {"channel_id": channel_id, "sdp": self.pc.localDescription.sdp}
        )
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        return joined

    async def rejoin(self, channel_id: str) -> dict[str, Any]:
        """Come back after `voice.leave`, with a fresh peer connection, on the same socket."""
        await self._close_media()
        self.received, self.offers = {}, []
        self.pc = self._connection()
        return await self.join(channel_id)

    async def _on_offer(self, params: dict[str, Any]) -> None:
        # The server's renegotiation: someone's track came or went.
        assert params["channel_id"] == self._channel, params
        self.offers.append(params["sdp"])
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=params["sdp"], type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.rpc.request(
            "voice.answer", {"channel_id": self._channel, "sdp": self.pc.localDescription.sdp}
        )

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._readers.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        frames = self.received.setdefault(track.id, [])
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.AudioFrame)
                pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
                frames.append(pcm.astype(np.int16))

    def frames_from(self, user_id: str) -> int:
        """How many frames arrived on `user_id`'s track(s)."""
        return len(self.received.get(user_id, []))

    def hears(self, user_id: str, frames: int) -> Callable[[], bool]:
        """A check for :func:`eventually`: `frames` frames arrived on `user_id`'s track."""
        return lambda: self.frames_from(user_id) >= frames

    async def _close_media(self) -> None:
        await self.pc.close()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        self._readers = []

    async def close(self) -> None:
        """Close the peer connection and the socket."""
        await self._close_media()
        await self.rpc.close()


def _sections(sdp: str) -> list[str]:
    """The media sections of an SDP, each from its `m=` line."""
    return ["m=" + part for part in sdp.split("\r\nm=")[1:]]


def _section(sdp: str, mid: str) -> str:
    """The media section with `a=mid:<mid>`."""
    (section,) = [s for s in _sections(sdp) if f"\r\na=mid:{mid}\r\n" in s]
    return section


def _mid_sending(sdp: str, user_id: str) -> str | None:
    """The mid of the section whose track (msid) is `user_id`'s, if any."""
    for section in _sections(sdp):
        lines = section.split("\r\n")
        if any(line.startswith("a=msid:") and line.endswith(f" {user_id}") for line in lines):
            return next(line[len("a=mid:") :] for line in lines if line.startswith("a=mid:"))
    return None


@BOTH_MODES
async def test_two_aiortc_clients_talk_through_the_gateway(voice_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=voice_server.base_url, timeout=30) as http:
        admin = await account(http, "admin")
        accounts = {name: await account(http, name) for name in TONES}
        channel = await voice_channel(http, admin, "Lounge")
    watcher = await Rpc.connect(voice_server.base_url, admin.access_token)
    users: list[AiortcUser] = []
    try:
        for name, acc in accounts.items():
            users.append(
                AiortcUser(name, acc, await Rpc.connect(voice_server.base_url, acc.access_token))
            )
        alice, bob = users

        first = await alice.join(channel)
        assert first["participants"] == []
        assert first["ice_servers"] == []
        second = await bob.join(channel)
        assert second["participants"] == [{"user_id": alice.user_id, "muted": False}]

        # Each hears the other on a track named after them (via the server's renegotiation
        # offers) and nothing else: never their own voice.
        for me, other in [(alice, bob), (bob, alice)]:
            await eventually(me.hears(other.user_id, frames=100), f"{me.name} hears {other.name}")
        for me, other in [(alice, bob), (bob, alice)]:
            assert not me.rpc.errors, (me.name, me.rpc.errors)
            assert me.pc.connectionState == "connected", me.name
            assert set(me.received) == {other.user_id}, (me.name, list(me.received))
            pcm = np.concatenate(me.received[other.user_id][-50:])
            freq, share = dominant_frequency(pcm)
            assert abs(freq - TONES[other.name]) < 15, (me.name, freq)
            assert share > 0.5, (me.name, share)
            assert share_at(pcm, TONES[me.name]) < 0.01, me.name
            # The other's track came by a server voice.offer, answered with voice.answer.
            assert any(other.user_id in offer for offer in me.offers), me.name

        # Every member of the channel sees who came and who speaks.
        for user_id in (alice.user_id, bob.user_id):
            await eventually(
                watcher.sees("voice.user_joined", user_id=user_id, muted=False),
                f"voice.user_joined for {user_id}",
            )
            await eventually(
                watcher.sees("voice.speaking", user_id=user_id, speaking=True),
                f"voice.speaking for {user_id}",
            )
        assert alice.rpc.seen("voice.user_joined", channel_id=channel, user_id=bob.user_id)

        # Bob leaves: everyone is told, Alice is renegotiated without his track, and a newcomer
        # finds only Alice in the channel.
        offers_before = len(alice.offers)
        assert await bob.rpc.request("voice.leave", {"channel_id": channel}) == {}
        await eventually(
            alice.rpc.sees("voice.user_left", channel_id=channel, user_id=bob.user_id),
            "Alice sees Bob leave",
        )
        assert watcher.seen("voice.user_left", user_id=bob.user_id)
        await eventually(lambda: len(alice.offers) > offers_before, "Alice is renegotiated")
        # Bob's m-line (the one that carried his msid) is now rejected, and nothing sends as him.
        bobs_mid = _mid_sending(alice.offers[offers_before - 1], bob.user_id)
        assert bobs_mid is not None
        last = alice.offers[-1]
        assert _mid_sending(last, bob.user_id) is None, last
        assert _section(last, bobs_mid).startswith("m=audio 0 "), last
        assert "a=inactive" in _section(last, bobs_mid), last
        (gone,) = [t for t in alice.pc.getTransceivers() if t.mid == bobs_mid]
        await eventually(lambda: gone.currentDirection == "inactive", "Alice's side stops too")
        newcomer = await watcher.request("voice.join", {"channel_id": channel})
        assert newcomer["participants"] == [{"user_id": alice.user_id, "muted": False}]
        assert await watcher.request("voice.leave", {"channel_id": channel}) == {}

        # Bob comes back with a new peer connection: Alice is offered his new track (the
        # rejected m-line stays or is recycled) and they hear each other again.
        heard = alice.frames_from(bob.user_id)
        again = await bob.rejoin(channel)
        assert again["participants"] == [{"user_id": alice.user_id, "muted": False}]
        await eventually(bob.hears(alice.user_id, frames=50), "Bob hears Alice again")
        await eventually(
            alice.hears(bob.user_id, frames=heard + 50), "Alice hears Bob again", within=20
        )
        pcm = np.concatenate(alice.received[bob.user_id][-25:])
        assert abs(dominant_frequency(pcm)[0] - TONES["bob"]) < 15
        assert set(bob.received) == {alice.user_id}, list(bob.received)
        assert not alice.rpc.errors, alice.rpc.errors
        assert not bob.rpc.errors, bob.rpc.errors
    finally:
        for client in users:
            await client.close()
        await watcher.close()


class PageServer(ThreadingHTTPServer):
    """Serves the test page and takes its reports (on 127.0.0.1, another origin than the
    API's)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), PageHandler)
        self.reports: dict[str, dict[str, Any]] = {}
        self.changed = threading.Condition()

    @property
    def url(self) -> str:
        """Where the page is."""
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def add(self, report: dict[str, Any]) -> None:
        """Keep a report by its phase (`media`, `left` or `error`)."""
        with self.changed:
            self.reports[str(report.get("phase"))] = report
            self.changed.notify_all()

    async def report(self, phase: str, within: float) -> dict[str, Any]:
        """Wait for the page's report of `phase`; a page error fails at once, with its text."""

        def wait() -> bool:
            with self.changed:
                return self.changed.wait_for(
                    lambda: phase in self.reports or "error" in self.reports, within
                )

        arrived = await asyncio.to_thread(wait)
        assert "error" not in self.reports, self.reports["error"]["error"]
        assert arrived, f"no {phase!r} report from the page within {within} s: {self.reports}"
        return self.reports[phase]


class PageHandler(BaseHTTPRequestHandler):
    """GET / is the page, POST /report its reports."""

    server: PageServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path != "/":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def do_POST(self) -> None:
        if self.path != "/report":
            self.send_error(404)
            return
        self.server.add(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def page_server() -> Iterator[PageServer]:
    server = PageServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join()
    server.server_close()


@contextlib.contextmanager
def chromium(url: str, profile: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Headless Chromium with fake media devices on `url`; terminated on exit."""
    assert CHROMIUM is not None, "chromium is not installed (scripts/test.sh installs it)"
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
            f"--user-data-dir={profile}",
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield browser
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait(10)


class Bot:
    """An SDK voice call next to Chromium: sends a 1 kHz tone, and keeps the loudest sample of
    each decoded packet from `listen_to`."""

    def __init__(self, call: VoiceCall, listen_to: str) -> None:
        self.call = call
        self.listen_to = listen_to
        self.peaks: list[int] = []
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start talking and listening."""
        self._tasks = [asyncio.create_task(self._speak()), asyncio.create_task(self._listen())]

    def beeps(self) -> int:
        """How many loud packets arrived (Chromium's fake microphone beeps twice a second)."""
        return sum(peak > 10_000 for peak in self.peaks)

    async def _speak(self) -> None:
        encoder = OpusEncoder()
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        while True:
            pcm = tone(1_000.0, n * FRAME, FRAME)
            self.call.send(encoder.encode(pcm), audio_level_dbov(pcm.tobytes()))
            n += 1
            await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))

    async def _listen(self) -> None:
        decoder = OpusDecoder()
        async for packet in self.call.packets():
            if packet.participant_id == self.listen_to and packet.payload:
                pcm = decoder.decode(packet.payload).astype(np.int32)
                self.peaks.append(int(np.abs(pcm).max()))

    async def stop(self) -> None:
        """Stop talking and listening (the call stays)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []


@pytest.fixture
async def bot_client(voice_server: LiveServer) -> AsyncIterator[Client]:
    chat = Client(voice_server.base_url)
    yield chat
    await chat.close()


@BOTH_MODES
async def test_chromium_talks_through_the_gateway(
    voice_server: LiveServer, page_server: PageServer, bot_client: Client, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=voice_server.base_url, timeout=30) as http:
        admin = await account(http, "admin")
        carol = await account(http, "carol")
        channel = await voice_channel(http, admin, "Browser")
    me = await bot_client.login("admin", PASSWORD)
    bot_id = str(me.id)
    call = VoiceCall(bot_client, channel, bind_ip=lan_ip())
    await call.join()
    bot = Bot(call, listen_to=carol.user_id)
    bot.start()
    config = {
        "ws": voice_server.base_url.replace("http://", "ws://") + "/ws",
        "token": carol.access_token,
        "channel_id": channel,
    }
    try:
        with chromium(page_server.url + "#" + quote(json.dumps(config)), tmp_path / "profile"):
            media = await page_server.report("media", within=40)
            await eventually(lambda: bot.beeps() >= 2, "the bot hears Chromium's beeps")
            await bot.stop()
            await call.leave()
            left = await page_server.report("left", within=20)
    finally:
        await bot.stop()
        await call.peer.aclose()

    assert media["state"] == "connected", media
    assert media["joined"]["participants"] == [{"user_id": bot_id, "muted": False}]
    assert media["offers"] >= 1, media  # the bot's track came by the server's voice.offer
    assert media["candidates"] >= 1, media  # trickled with voice.ice, accepted
    # Chromium got exactly one remote track, the bot's (named after its user id), and heard it.
    assert media["tracks"] == [bot_id], media
    inbound = [s for s in media["inbound"] if s["trackIdentifier"] == bot_id]
    assert len(inbound) == 1, media
    assert inbound[0]["packetsReceived"] >= 50, media
    assert inbound[0]["audioLevel"] > 0, media
    assert media["packetsSent"] > 0, media
    # The bot got Chromium's fake microphone, decoded: its beeps, not silence.
    assert bot.beeps() >= 2, bot.peaks
    # The bot left: Chromium was told, and the server's renegotiation stopped its track.
    assert left["left"] == [bot_id], left
    assert left["state"] == "connected", left
    (transceiver,) = left["transceivers"]
    assert transceiver["currentDirection"] in ("inactive", "stopped"), left
    assert transceiver["track"] == "ended", left


async def test_a_client_offer_while_connected_gets_a_clear_error(
    voice_server: LiveServer,
) -> None:
    # A standard WebRTC client offers again on its own (negotiationneeded after a track
    # change, an ICE restart). The server does not support client-initiated renegotiation
    # (docs/voice.md): it must say so in a JSON-RPC error and keep the call, not fail
    # internally.
    async with httpx.AsyncClient(base_url=voice_server.base_url, timeout=30) as http:
        admin = await account(http, "admin")
        alice_account = await account(http, "alice")
        channel = await voice_channel(http, admin, "Lounge")
    rpc = await Rpc.connect(voice_server.base_url, alice_account.access_token)
    alice = AiortcUser("alice", alice_account, rpc)
    watcher = await Rpc.connect(voice_server.base_url, admin.access_token)
    try:
        await alice.join(channel)
        await eventually(lambda: alice.pc.connectionState == "connected", "Alice connects")
        again = await alice.pc.createOffer()
        with pytest.raises(RpcError) as refused:
            await alice.rpc.request("voice.offer", {"channel_id": channel, "sdp": again.sdp})
        error = refused.value.args[0]
        assert error["code"] == -32600, error  # a request out of order, like one before join
        assert "voice.join" in error["message"], error  # what to do instead (a fresh join)
        # The call stands.
        assert alice.pc.connectionState == "connected"
        joined = await watcher.request("voice.join", {"channel_id": channel})
        assert joined["participants"] == [{"user_id": alice.user_id, "muted": False}]
    finally:
        await alice.close()
        await watcher.close()
