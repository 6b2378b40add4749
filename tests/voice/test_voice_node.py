"""Voice on its own node: a real `voicechat voice` process, two live API instances in remote mode
(`VOICECHAT_VOICE_MODE=remote`) and native peers signalling through the gateway of different
instances; the control channel between them runs over the test Valkey."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import numpy as np
import pytest
from redis import Redis

from tests.conftest import LiveServer
from tests.voice.conftest import dominant_frequency, tone
from voicechat._native.dsp import OpusDecoder, OpusEncoder, audio_level_dbov
from voicechat._native.sfu import ReceivedPacket
from voicechat.cache import keys
from voicechat.sdk import Channel, Client, GatewayEvent
from voicechat.sdk.gateway import GatewayError
from voicechat.sdk.voice import VoiceCall

pytestmark = pytest.mark.slow

FRAME = 960  # 20 ms at 48 kHz
TONES = {"alice": 440.0, "bob": 1_000.0}


class VoiceNodeProcess:
    """A `voicechat voice` process and the id it registered under."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path, alive: Path) -> None:
        self.process = process
        self.log_path = log_path
        self.alive_file = alive
        self.node_id = ""

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def voice_node_factory(
    clean_valkey: str, tmp_path: Path
) -> Iterator[Callable[[], VoiceNodeProcess]]:
    """Start `voicechat voice` processes on the test Valkey; all are killed at the end."""
    started: list[VoiceNodeProcess] = []

    def start() -> VoiceNodeProcess:
        log_path = tmp_path / f"voice-{len(started)}.log"
        alive = tmp_path / f"voice-{len(started)}.alive"
        env = {
            **os.environ,
            "VOICECHAT_VALKEY_URL": clean_valkey,
            "VOICECHAT_MEDIA_PORT": "0",
            "VOICECHAT_LOG_FORMAT": "json",
            "VOICECHAT_VOICE_ALIVE_FILE": str(alive),
        }
        with Redis.from_url(clean_valkey) as valkey:
            before = {m.decode() for m in valkey.smembers(keys.voice_nodes())}
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    [sys.executable, "-m", "voicechat", "voice"],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            node = VoiceNodeProcess(process, log_path, alive)
            started.append(node)
            deadline = time.monotonic() + 60
            while not node.node_id:
                assert process.poll() is None, f"the voice node exited:\n{node.log}"
                assert time.monotonic() < deadline, f"the voice node did not register:\n{node.log}"
                new = {m.decode() for m in valkey.smembers(keys.voice_nodes())} - before
                if new and valkey.exists(keys.voice_node(next(iter(new)))):
                    node.node_id = next(iter(new))
                time.sleep(0.05)
        return node

    yield start
    for node in started:
        if node.process.poll() is None:
            node.process.kill()
        node.process.wait(30)


@pytest.fixture
def remote_api_factory(
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> Callable[[], LiveServer]:
    """API instances in remote voice mode sharing one database, Valkey and data dir (keys)."""

    def start() -> LiveServer:
        return live_server_factory(
            {
                "VOICECHAT_DATABASE_URL": database_url,
                "VOICECHAT_VALKEY_URL": clean_valkey,
                "VOICECHAT_DATA_DIR": str(tmp_path / "api-data"),
                "VOICECHAT_VOICE_MODE": "remote",
            }
        )

    return start


@dataclass
class Member:
    """A user with an SDK client on one API instance; its notifications are collected."""

    name: str
    chat: Client
    events: list[GatewayEvent] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    call: VoiceCall | None = None

    @property
    def user_id(self) -> str:
        assert self.chat.user is not None
        return str(self.chat.user.id)

    async def collect(self) -> None:
        async for event in self.chat.events():
            self.events.append(event)

    def seen(self, method: str, **params: Any) -> bool:
        return any(
            e.method == method and all(e.params.get(k) == v for k, v in params.items())
            for e in self.events
        )


@pytest.fixture
async def members() -> AsyncIterator[Callable[..., Any]]:
    made: list[Member] = []

    async def make(server: LiveServer, name: str) -> Member:
        chat = Client(server.base_url)
        await chat.register(name, f"{name} password")
        member = Member(name, chat)
        member.task = asyncio.create_task(member.collect())
        made.append(member)
        return member

    yield make
    for member in made:
        if member.task is not None:
            member.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await member.task
        if member.call is not None:
            await member.call.peer.aclose()
        await member.chat.close()


@dataclass
class Cluster:
    """A voice node, two API instances in remote mode, and a voice channel: admin and alice on
    instance A, bob on instance B."""

    node: VoiceNodeProcess
    api_a: LiveServer
    api_b: LiveServer
    admin: Member
    alice: Member
    bob: Member
    channel: Channel


@pytest.fixture
async def cluster(
    voice_node_factory: Callable[[], VoiceNodeProcess],
    remote_api_factory: Callable[[], LiveServer],
    members: Callable[..., Any],
) -> Cluster:
    node = await asyncio.to_thread(voice_node_factory)
    api_a = await asyncio.to_thread(remote_api_factory)
    api_b = await asyncio.to_thread(remote_api_factory)
    admin = await members(api_a, "admin")
    alice = await members(api_a, "alice")
    bob = await members(api_b, "bob")
    channel = await admin.chat.create_channel("Lounge", type="voice")
    return Cluster(node, api_a, api_b, admin, alice, bob, channel)


async def _eventually(check: Callable[[], bool], within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 (polling what other tasks collect)
            await asyncio.sleep(0.05)


async def _talk_until_heard(
    calls: dict[str, VoiceCall], want: int = 150, max_frames: int = 1500
) -> dict[str, list[ReceivedPacket]]:
    """Every call sends its own tone in real time until each has received `want` packets."""
    encoders = {name: OpusEncoder(dtx=False) for name in calls}
    received: dict[str, list[ReceivedPacket]] = {name: [] for name in calls}
    for n in range(max_frames):
        for name, call in calls.items():
            pcm = tone(TONES[name], n * FRAME, FRAME)
            call.send(encoders[name].encode(pcm), audio_level_dbov(pcm.tobytes()))
        for name, call in calls.items():
            while (packet := call.receive(0.0)) is not None:
                received[name].append(packet)
        if all(len(packets) >= want for packets in received.values()):
            break
        await asyncio.sleep(0.02)
    return received


def _heard(packets: list[ReceivedPacket]) -> tuple[float, float]:
    decoder = OpusDecoder()
    pcm = np.concatenate([decoder.decode(p.payload) for p in packets])
    return dominant_frequency(pcm[FRAME * 10 :])


def _health(server: LiveServer) -> dict[str, Any]:
    return dict(httpx.get(f"{server.base_url}/health", timeout=5).json())


async def test_users_on_two_api_instances_talk_through_a_voice_node(
    cluster: Cluster, clean_valkey: str
) -> None:
    node, api_a = cluster.node, cluster.api_a
    alice, bob, channel = cluster.alice, cluster.bob, cluster.channel
    health = await asyncio.to_thread(_health, api_a)
    assert health["status"] == "ok"
    assert "sfu" not in health["components"]
    assert health["components"]["voice"]["status"] == "ok"
    assert health["components"]["voice"]["detail"].startswith("1 node,")
    assert node.alive_file.read_text() == f"{node.node_id}\n"  # for a container health check

    alice.call = VoiceCall(alice.chat, channel.id)
    joined = await alice.call.join()
    assert joined["participants"] == []
    with pytest.raises(GatewayError) as again:
        await alice.chat.gateway.request(
            "voice.offer", {"channel_id": str(channel.id), "sdp": "v=0\r\n"}
        )
    assert again.value.code == "-32600"
    bob.call = VoiceCall(bob.chat, channel.id)
    joined = await bob.call.join()
    assert joined["participants"] == [{"user_id": alice.user_id, "muted": False}]
    await _eventually(lambda: alice.seen("voice.user_joined", user_id=bob.user_id))
    await _eventually(lambda: bob.seen("voice.user_joined", user_id=alice.user_id))

    # Garbage and forged events on the API instances' inboxes are dropped: a `left` for Alice
    # from a node she is not on changes nothing.
    with Redis.from_url(clean_valkey) as valkey:
        inboxes = valkey.pubsub_channels(keys.voice_inbox("*"))
        assert len(inboxes) == 2
        forged = {"v": 1, "type": "event", "node": "elsewhere", "kind": "left"}
        for inbox in inboxes:
            for raw in [
                b"\xff garbage",
                "[]",
                json.dumps({"v": 1, "type": "reply", "id": "nobody", "ok": True}),
                json.dumps({"v": 1, "type": "event", "node": node.node_id}),
                json.dumps({**forged, "room": str(channel.id), "participant": alice.user_id}),
            ]:
                valkey.publish(inbox, raw)

    # Both media paths end on the one node, although signalling went through two instances.
    received = await _talk_until_heard({"alice": alice.call, "bob": bob.call})
    for me, other, whom in [("alice", "bob", bob), ("bob", "alice", alice)]:
        packets = received[me]
        assert len(packets) >= 150, (me, len(packets))
        assert {p.participant_id for p in packets} == {whom.user_id}
        frequency, share = _heard(packets)
        assert abs(frequency - TONES[other]) < 15, (me, frequency)
        assert share > 0.5, (me, share)
    # Speaking crosses instances: Bob's comes from the node to instance B, then to Alice on A.
    await _eventually(lambda: alice.seen("voice.speaking", user_id=bob.user_id, speaking=True))
    await _eventually(lambda: bob.seen("voice.speaking", user_id=alice.user_id, speaking=True))

    await bob.chat.gateway.request("voice.mute", {"channel_id": str(channel.id)})
    await _eventually(lambda: alice.seen("voice.state", user_id=bob.user_id, muted=True))
    await bob.call.leave()
    await _eventually(lambda: alice.seen("voice.user_left", user_id=bob.user_id))
    assert not bob.seen("voice.user_left", user_id=alice.user_id)
    # Valkey drops every subscriber: the instances subscribe to their inboxes again, and
    # requests that need the node's reply work again (one sent in the gap may get
    # voice_unavailable, as the message says: try again shortly).
    with Redis.from_url(clean_valkey) as valkey:
        valkey.client_kill_filter(_type="pubsub")
    unmuted: dict[str, Any] = {}
    refusals: list[str] = []
    async with asyncio.timeout(30):
        while not unmuted:
            try:
                unmuted = await alice.chat.gateway.request(
                    "voice.unmute", {"channel_id": str(channel.id)}
                )
            except GatewayError as exc:
                refusals.append(exc.message)
    assert unmuted == {"muted": False}
    assert all("try again shortly" in refusal for refusal in refusals), refusals
    assert node.process.poll() is None


async def test_a_killed_voice_node_is_noticed_and_replaced(
    cluster: Cluster,
    voice_node_factory: Callable[[], VoiceNodeProcess],
    clean_valkey: str,
) -> None:
    node, api_b = cluster.node, cluster.api_b
    admin, alice, bob, channel = cluster.admin, cluster.alice, cluster.bob, cluster.channel
    alice.call = VoiceCall(alice.chat, channel.id)
    await alice.call.join()
    bob.call = VoiceCall(bob.chat, channel.id)
    await bob.call.join()
    with Redis.from_url(clean_valkey) as valkey:
        assert valkey.get(keys.voice_room_pin(channel.id)) == node.node_id.encode()

    node.process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(node.process.wait, 30)
    # Once its heartbeat key expires, each instance lets its own participants go.
    await _eventually(lambda: admin.seen("voice.user_left", user_id=alice.user_id))
    await _eventually(lambda: admin.seen("voice.user_left", user_id=bob.user_id))
    health = await asyncio.to_thread(_health, api_b)
    assert health["status"] == "degraded"
    assert health["components"]["voice"] == {
        "status": "down",
        "latency_ms": None,
        "detail": "no voice node is running",
    }
    with pytest.raises(GatewayError) as unavailable:
        await alice.chat.gateway.request("voice.join", {"channel_id": str(channel.id)})
    assert unavailable.value.code == "-32000"
    assert "no voice node is running" in unavailable.value.message

    # A new node takes the channel over: the stale pin names the dead node and is replaced.
    replacement = await asyncio.to_thread(voice_node_factory)
    await alice.call.peer.aclose()
    await bob.call.peer.aclose()
    alice.call = VoiceCall(alice.chat, channel.id)
    await alice.call.join()
    bob.call = VoiceCall(bob.chat, channel.id)
    await bob.call.join()
    with Redis.from_url(clean_valkey) as valkey:
        assert valkey.get(keys.voice_room_pin(channel.id)) == replacement.node_id.encode()
    received = await _talk_until_heard({"alice": alice.call, "bob": bob.call}, want=50)
    assert {p.participant_id for p in received["alice"]} == {bob.user_id}
    assert {p.participant_id for p in received["bob"]} == {alice.user_id}

    # A node stopped with SIGTERM leaves its rooms: the members are told at once.
    alice.events.clear()
    replacement.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(replacement.process.wait, 30) == 0, replacement.log
    await _eventually(lambda: alice.seen("voice.user_left", user_id=bob.user_id))
    with Redis.from_url(clean_valkey) as valkey:
        assert not valkey.exists(keys.voice_node(replacement.node_id))
        assert not valkey.sismember(keys.voice_nodes(), replacement.node_id)
    assert not replacement.alive_file.exists()


async def test_a_dead_api_instance_loses_its_callers_on_the_node(
    cluster: Cluster, clean_valkey: str
) -> None:
    node, api_b = cluster.node, cluster.api_b
    alice, bob, channel = cluster.alice, cluster.bob, cluster.channel
    for member in (alice, bob):
        member.call = VoiceCall(member.chat, channel.id)
        await member.call.join()

    def load() -> int:
        with Redis.from_url(clean_valkey) as valkey:
            raw = valkey.get(keys.voice_node(node.node_id))
        return int(json.loads(raw)["load"]) if raw else -1

    await _eventually(lambda: load() == 2)
    api_b.process.send_signal(signal.SIGKILL)
    # Instance A reaps B's voice state (B's heartbeat expired) and the node drops B's caller.
    await _eventually(lambda: alice.seen("voice.user_left", user_id=bob.user_id))
    await _eventually(lambda: load() == 1)
    assert "API instance" in node.log


def _request(instance: str, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "id": uuid4().hex, "instance": instance, "deadline": time.time() + 30, **fields}


def test_malformed_control_messages_do_not_kill_the_node(
    voice_node_factory: Callable[[], VoiceNodeProcess], clean_valkey: str
) -> None:
    node = voice_node_factory()
    instance = f"test-{uuid4().hex[:8]}"
    queue = keys.voice_node_requests(node.node_id)
    bad_sdp = _request(
        instance, op="join", room="r1", participant="p1", sdp="garbage", user_limit=5
    )
    no_sdp = _request(instance, op="join", room="r1", participant="p1", user_limit=5)
    unknown_op = _request(instance, op="reboot")
    not_mine = _request(instance, op="leave", participant="someone")
    stale = {**_request(instance, op="ping"), "deadline": time.time() - 60}
    ping = _request(instance, op="ping")
    with Redis.from_url(clean_valkey) as valkey, valkey.pubsub() as inbox:
        inbox.subscribe(keys.voice_inbox(instance))
        garbage: list[str | bytes] = [
            b"\xff\xfe not json",
            "[1, 2, 3]",
            json.dumps({"v": 2, "op": "ping"}),
            "{}",
            json.dumps({**ping, "id": "not an id!"}),
            "x" * 100_000,
        ]
        # The node takes requests in order (LPUSH here, BRPOP there): the ping comes last.
        for raw in [*garbage, bad_sdp, no_sdp, unknown_op, not_mine, stale, ping]:
            valkey.lpush(queue, raw if isinstance(raw, str | bytes) else json.dumps(raw))
        replies: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 30
        while ping["id"] not in replies:
            assert time.monotonic() < deadline, f"no reply to the ping:\n{node.log}"
            message = inbox.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                reply = json.loads(message["data"])
                replies[reply["id"]] = reply
    assert replies[ping["id"]] == {
        "v": 1,
        "type": "reply",
        "id": ping["id"],
        "ok": True,
        "result": {"node": node.node_id},
    }
    assert replies[bad_sdp["id"]]["error"]["code"] == "invalid_sdp"
    assert replies[no_sdp["id"]]["error"] == {
        "code": "bad_request",
        "message": "join.sdp: Field required",
    }
    assert replies[unknown_op["id"]]["error"]["code"] == "bad_request"
    assert replies[not_mine["id"]]["error"]["code"] == "unknown_participant"
    assert stale["id"] not in replies  # its sender gave up long ago
    # The rest could not say whom to answer; the node logged them and carried on.
    assert set(replies) == {
        bad_sdp["id"],
        no_sdp["id"],
        unknown_op["id"],
        not_mine["id"],
        ping["id"],
    }
    assert node.process.poll() is None
    assert node.log.count("malformed control request") == len(garbage) + 2
    assert "garbage" not in node.log  # request contents (SDP: ICE credentials) stay out of logs


def test_a_voice_node_needs_valkey() -> None:
    env = {k: v for k, v in os.environ.items() if k != "VOICECHAT_VALKEY_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "voicechat", "voice"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "voicechat: VOICECHAT_VALKEY_URL is required for a voice node (it meets the API there)"
    ]
    unreachable = subprocess.run(
        [sys.executable, "-m", "voicechat", "voice", "--valkey-url", "redis://:pw@127.0.0.1:1/0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.splitlines() == ["voicechat: cannot reach Valkey: ConnectionError"]


async def test_a_node_that_stops_answering_gives_a_clear_error(
    voice_node_factory: Callable[[], VoiceNodeProcess],
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
    members: Callable[..., Any],
) -> None:
    node = await asyncio.to_thread(voice_node_factory)
    api = await asyncio.to_thread(
        live_server_factory,
        {
            "VOICECHAT_DATABASE_URL": database_url,
            "VOICECHAT_VALKEY_URL": clean_valkey,
            "VOICECHAT_DATA_DIR": str(tmp_path / "api-data"),
            "VOICECHAT_VOICE_MODE": "remote",
            "VOICECHAT_VOICE_REQUEST_TIMEOUT": "1",
        },
    )
    admin = await members(api, "admin")
    channel = await admin.chat.create_channel("Lounge", type="voice")
    await admin.chat.gateway.request("voice.join", {"channel_id": str(channel.id)})
    admin.call = VoiceCall(admin.chat, channel.id)
    offer = await admin.call.peer.offer()

    node.process.send_signal(signal.SIGSTOP)  # alive on paper (for a few seconds), but silent
    try:
        with pytest.raises(GatewayError) as unavailable:
            await admin.chat.gateway.request(
                "voice.offer", {"channel_id": str(channel.id), "sdp": offer}
            )
    finally:
        node.process.send_signal(signal.SIGCONT)
    assert unavailable.value.code == "-32000"
    assert "voice" in unavailable.value.message
    # Woken up, the node finds the join its sender gave up on and drops it unrun.
    await _eventually(lambda: "dropped a stale join request" in node.log)
    assert node.process.poll() is None
