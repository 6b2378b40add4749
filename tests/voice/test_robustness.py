"""One bad peer or packet never breaks a call: fuzzed datagrams, bad SDP, vanished peers."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import threading
import time

import pytest

from tests.voice.conftest import Signaling
from tests.voice.test_native_peers import drain, join, talk
from voicechat._native import (
    InvalidIdError,
    InvalidSdpError,
    ParticipantExistsError,
    RoomFullError,
    UnknownParticipantError,
    UnknownRoomError,
)
from voicechat.voice import Peer, Sfu

FUZZ_DATAGRAMS = 100_000


def fuzz_datagrams(ufrag: str, count: int, seed: int = 6) -> list[bytes]:
    """Random and truncated STUN, DTLS, RTP and RTCP lookalikes (RFC 7983 first bytes)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fuzz, not secrets
    cookie = bytes.fromhex("2112a442")
    username = f"{ufrag}:fuzz".encode()
    attr = struct.pack("!HH", 0x0006, len(username)) + username
    attr += b"\0" * (-len(attr) % 4)
    stun = struct.pack("!HH", 0x0001, len(attr) + 24) + cookie + os.urandom(12) + attr
    stun += struct.pack("!HH", 0x0008, 20) + os.urandom(20)  # MESSAGE-INTEGRITY, wrong
    out = []
    for i in range(count):
        kind = i % 5
        if kind == 0:
            # STUN naming a real participant's ufrag, with a bad integrity, often truncated.
            data = stun[: rng.randrange(20, len(stun) + 1)]
        elif kind == 1:
            # DTLS record header (handshake / application data) + random body.
            data = bytes([rng.choice([20, 21, 22, 23]), 0xFE, 0xFD]) + os.urandom(
                rng.randrange(0, 200)
            )
        elif kind == 2:
            # RTP header with the Opus payload type, random SSRC and payload.
            data = bytes([0x80 | rng.randrange(0, 16), 111]) + os.urandom(rng.randrange(0, 200))
        elif kind == 3:
            # RTCP SR/RR/SDES/BYE/feedback lookalikes.
            data = bytes([0x80 | rng.randrange(0, 32), rng.choice([200, 201, 202, 203, 205, 206])])
            data += os.urandom(rng.randrange(0, 100))
        else:
            data = os.urandom(rng.randrange(0, 1300))
        out.append(data)
    return out


def flood(target: tuple[str, int], datagrams: list[bytes]) -> None:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    try:
        for i, data in enumerate(datagrams):
            socks[i % 4].sendto(data, target)
            if i % 2_000 == 0:
                # Let the media thread breathe: this measures robustness, not buffer sizes.
                time.sleep(0.002)
    finally:
        for sock in socks:
            sock.close()


async def test_fuzzed_datagrams_leave_the_call_working(sfu: Sfu, signaling: Signaling) -> None:
    async with Peer() as alice, Peer() as bob:
        await join(sfu, signaling, "alice", alice)
        await join(sfu, signaling, "bob", bob)
        await signaling.settle(["alice", "bob"])
        answer_ufrag = await _ufrag_of(sfu, "alice")
        datagrams = fuzz_datagrams(answer_ufrag, FUZZ_DATAGRAMS)
        flooder = threading.Thread(target=flood, args=(sfu.local_addr, datagrams))
        started = time.monotonic()
        flooder.start()
        # Talk during the flood, then after it: the call must carry on.
        await talk({"alice": alice, "bob": bob}, 50)
        await asyncio.to_thread(flooder.join)
        flood_seconds = time.monotonic() - started
        drain(alice), drain(bob)
        await talk({"alice": alice, "bob": bob}, 50)
        for me, peer, other in [("alice", alice, "bob"), ("bob", bob, "alice")]:
            packets = drain(peer)
            assert len(packets) == 50, (me, len(packets), flood_seconds)
            assert {p.participant_id for p in packets} == {other}
        assert signaling.find("left", "alice") is None
        assert signaling.find("left", "bob") is None
        assert await sfu.participants("room") == ["alice", "bob"]


async def _ufrag_of(sfu: Sfu, participant: str) -> str:
    """The SFU's ICE ufrag for a participant, from an offer it made to it."""
    offer = await sfu.pending_offer(participant)
    if offer is None:
        # Join a throwaway participant to read a ufrag format; fall back to the SFU's answer.
        peer = Peer()
        try:
            answer = await sfu.join("room", "probe", await peer.offer())
        finally:
            await peer.aclose()
        await sfu.leave("probe")
        offer = answer
    for line in offer.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line.removeprefix("a=ice-ufrag:").strip()
    raise AssertionError("no ufrag")


async def test_bad_sdp_is_refused_clearly(sfu: Sfu) -> None:
    async with Peer() as peer:
        good = await peer.offer()
    no_audio = good.replace("m=audio", "m=video")
    no_codec = "\r\n".join(line for line in good.splitlines() if "opus" not in line.lower())
    for what, sdp, message in [
        ("garbage", "this is not SDP", None),
        ("empty", "", None),
        ("binary", "\x00\x01\x02v=0", None),
        ("no audio", no_audio, "no audio"),
        ("no codec", no_codec, "Opus"),
    ]:
        with pytest.raises(InvalidSdpError, match=message) as caught:
            await sfu.join("room", "x", sdp)
        assert isinstance(caught.value, ValueError), what
        assert str(caught.value).startswith("invalid SDP: "), what
    assert await sfu.participants("room") == []
    await sfu.join("room", "x", good)
    with pytest.raises(InvalidSdpError, match="no offer is pending"):
        await sfu.accept_answer("x", good.replace("a=setup:actpass", "a=setup:active"))
    with pytest.raises(InvalidSdpError):
        await sfu.accept_answer("x", "nonsense")


async def test_ids_rooms_and_limits(sfu: Sfu) -> None:
    async with Peer() as a, Peer() as b, Peer() as c:
        await sfu.create_room("pair", user_limit=2)
        await sfu.join("pair", "a", await a.offer())
        with pytest.raises(ParticipantExistsError):
            await sfu.join("pair", "a", await b.offer())
        await sfu.join("pair", "b", await c.offer())
        with pytest.raises(RoomFullError, match="pair is full"):
            await sfu.join("pair", "c", await Peer().offer())
        with pytest.raises(UnknownRoomError):
            await sfu.join("nowhere", "d", "v=0")
        with pytest.raises(InvalidIdError):
            await sfu.join("pair", "has space", "v=0")
        with pytest.raises(UnknownParticipantError):
            await sfu.leave("nobody")
        assert await sfu.participants("pair") == ["a", "b"]


async def test_a_vanished_peer_is_removed_and_announced_within_the_ice_timeout(
    sfu: Sfu, signaling: Signaling
) -> None:
    async with Peer() as alice, Peer() as bob:
        await join(sfu, signaling, "alice", alice)
        await join(sfu, signaling, "bob", bob)
        await signaling.settle(["alice", "bob"])
        await bob.aclose()  # no goodbye: as if the machine lost power
        vanished = time.monotonic()
        ice_timeout = sfu.native.config.ice_timeout
        async with asyncio.timeout(ice_timeout + 2):
            while (left := signaling.find("left", "bob")) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert left.reason == "ice_timeout"
        assert time.monotonic() - vanished <= ice_timeout + 1
        # alice was offered the removal of bob's track, answered it, and is still connected.
        await signaling.settle(["alice"])
        assert await sfu.participants("room") == ["alice"]
        assert (await sfu.stats("alice")).connected


async def test_mute_stops_forwarding(sfu: Sfu, signaling: Signaling) -> None:
    async with Peer() as alice, Peer() as bob:
        await join(sfu, signaling, "alice", alice)
        await join(sfu, signaling, "bob", bob)
        await signaling.settle(["alice", "bob"])
        await sfu.set_muted("alice", True)
        await talk({"alice": alice}, 20)
        assert drain(bob) == []
        assert (await sfu.stats("alice")).muted
        await sfu.set_muted("alice", False)
        await talk({"alice": alice}, 20)
        packets = drain(bob)
        assert len(packets) == 20
        seqs = [p.seq for p in packets]
        assert seqs == list(range(seqs[0], seqs[0] + 20))
