"""Two native peers talk through the SFU: real UDP, DTLS-SRTP and Opus from the DSP crate."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import numpy as np

from tests.voice.conftest import Signaling, dominant_frequency, tone
from voicechat._native.dsp import OpusDecoder, OpusEncoder, audio_level_dbov
from voicechat._native.sfu import ReceivedPacket, SfuConfig
from voicechat.voice import Peer, Sfu

FRAME = 960
TONES = {"alice": 440.0, "bob": 1_000.0}


async def join(sfu: Sfu, signaling: Signaling, participant: str, peer: Peer) -> None:
    signaling.answerers[participant] = peer.accept_offer
    answer = await sfu.join("room", participant, await peer.offer())
    await peer.accept_answer(answer)


async def talk(peers: dict[str, Peer], frames: int) -> None:
    """Every peer sends its own tone, Opus-encoded with DTX on, in real time."""
    encoders = {name: OpusEncoder(dtx=True, fec=True) for name in peers}
    for n in range(frames):
        for name, peer in peers.items():
            pcm = tone(TONES[name], n * FRAME, FRAME)
            peer.send(encoders[name].encode(pcm), audio_level_dbov(pcm.tobytes()))
        await asyncio.sleep(0.02)


def drain(peer: Peer) -> list[ReceivedPacket]:
    packets = []
    while (packet := peer.native.recv(0.3)) is not None:
        packets.append(packet)
    return packets


def heard_tone(packets: list[ReceivedPacket]) -> tuple[float, float]:
    decoder = OpusDecoder()
    pcm = np.concatenate([decoder.decode(p.payload) for p in packets])
    return dominant_frequency(pcm[FRAME * 10 :])


async def test_two_native_peers_hear_each_other(sfu: Sfu, signaling: Signaling) -> None:
    async with Peer() as alice, Peer() as bob:
        await join(sfu, signaling, "alice", alice)
        await join(sfu, signaling, "bob", bob)
        await signaling.settle(["alice", "bob"])
        await talk({"alice": alice, "bob": bob}, 100)
        for me, other, peer in [("alice", "bob", alice), ("bob", "alice", bob)]:
            packets = drain(peer)
            assert {p.participant_id for p in packets} == {other}
            assert len(packets) == 100
            freq, share = heard_tone(packets)
            assert abs(freq - TONES[other]) < 15, (me, freq)
            assert share > 0.5, (me, share)
        stats = await sfu.stats("alice")
        assert (stats.packets_in, stats.packets_out) == (100, 100)
        assert stats.connected
        assert signaling.find("speaking", "alice") is not None


async def test_ten_percent_loss(sfu: Sfu, signaling: Signaling) -> None:
    async with Peer(send_loss=0.1, seed=7) as alice, Peer() as bob:
        await join(sfu, signaling, "alice", alice)
        await join(sfu, signaling, "bob", bob)
        await signaling.settle(["alice", "bob"])
        await talk({"alice": alice}, 200)
        packets = drain(bob)
        assert 150 <= len(packets) <= 195, len(packets)
        assert alice.native.stats()["datagrams_lost"] >= 5
        # Decode with concealment for the gaps: the tone still comes through.
        decoder = OpusDecoder()
        pcm = []
        last = None
        for p in sorted(packets, key=lambda p: p.seq):
            if last is not None:
                pcm.extend(decoder.conceal() for _ in range(p.seq - last - 1))
            pcm.append(decoder.decode(p.payload))
            last = p.seq
        freq, _share = dominant_frequency(np.concatenate(pcm)[FRAME * 10 :])
        assert abs(freq - TONES["alice"]) < 15
        # The SFU sees the uplink loss in RTCP.
        await asyncio.sleep(1.5)
        stats = await sfu.stats("alice")
        assert stats.packets_in == len(packets)
        assert stats.loss_in is not None
        assert 0.02 <= stats.loss_in <= 0.25, stats.loss_in
        assert stats.jitter_in is not None


async def test_rooms_on_different_worker_threads() -> None:
    config = SfuConfig(media_port=0, worker_threads=2, ice_timeout=5.0)
    async with Sfu(config) as sfu:
        assert len({port for _host, port in sfu.native.local_addrs}) == 2
        signaling = Signaling(sfu)
        pump = asyncio.create_task(signaling.run())
        try:
            # Room names chosen so the two rooms hash to different threads.
            ports = {}
            for room in ("a", "b", "c", "d"):
                await sfu.create_room(room)
                async with Peer() as probe:
                    answer = await sfu.join(room, f"probe-{room}", await probe.offer())
                await sfu.leave(f"probe-{room}")
                ports[room] = next(
                    line.split()[5] for line in answer.splitlines() if "typ host" in line
                )
            assert len(set(ports.values())) == 2, ports
            async with Peer() as alice, Peer() as bob:
                for room, name, peer in [("a", "alice", alice), ("a", "bob", bob)]:
                    signaling.answerers[name] = peer.accept_offer
                    await peer.accept_answer(await sfu.join(room, name, await peer.offer()))
                await signaling.settle(["alice", "bob"])
                await talk({"alice": alice}, 20)
                assert len(drain(bob)) == 20
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump


async def test_dtx_silence_is_not_sent_and_ends_speaking(sfu: Sfu, signaling: Signaling) -> None:
    async with Peer() as alice, Peer() as bob:
        await join(sfu, signaling, "alice", alice)
        await join(sfu, signaling, "bob", bob)
        await signaling.settle(["alice", "bob"])
        encoder = OpusEncoder(dtx=True)
        sent = 0
        # 1 s tone, 1 s silence, 1 s tone. With DTX the encoder turns silence into 1-2 byte
        # packets, which a WebRTC sender does not transmit; the gap must still be seen as a
        # pause (timestamps jump) and end speaking.
        for n in range(150):
            pcm = (
                tone(TONES["alice"], n * FRAME, FRAME)
                if not 50 <= n < 100
                else np.zeros(FRAME, np.int16)
            )
            packet = encoder.encode(pcm)
            # DTX frames (2 bytes or less) are passed too: the peer skips them on the wire.
            alice.send(packet, audio_level_dbov(pcm.tobytes()))
            sent += len(packet) > 2
            await asyncio.sleep(0.02)
        packets = drain(bob)
        # libopus keeps sending for a few frames into silence, then one frame per 400 ms.
        assert 100 <= sent <= 125, sent
        assert len(packets) == sent
        assert alice.native.stats()["dtx_frames"] == 150 - sent
        steps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(packets)]
        # Silence arrives as gaps: libopus DTX sends one frame per 400 ms.
        assert max(steps) >= FRAME * 15, max(steps)
        speaking = [e.speaking for e in signaling.events if e.kind == "speaking"]
        assert speaking[:3] == [True, False, True], speaking
