"""Record a voice channel to a WAV file (everyone mixed, 48 kHz mono 16-bit).

    python examples/record_bot.py http://127.0.0.1:8080 botname 'bot password' Lounge out.wav 60

Joins muted, records for the given number of seconds, and leaves. Each sender gets its own
jitter buffer and decoder; the mix has a soft limiter, so loud overlaps do not clip.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import wave
from pathlib import Path

import numpy as np

from voicechat._native import CorruptPacketError
from voicechat._native.dsp import PlaybackPipeline
from voicechat.sdk import AuthError, Client
from voicechat.sdk.voice import VoiceCall


async def record(chat: Client, channel_name: str, path: Path, seconds: float) -> None:
    """Join `channel_name` and write what it hears for `seconds` to `path`."""
    channel = await chat.channel_by_name(channel_name)
    playback = PlaybackPipeline(frame_ms=20)
    senders: dict[str, int] = {}
    frames: list[np.ndarray] = []
    async with VoiceCall(chat, channel.id) as call:
        await call.mute()

        async def receive() -> None:
            async for packet in call.packets():
                sender = senders.setdefault(packet.participant_id or packet.mid, len(senders))
                with contextlib.suppress(CorruptPacketError):  # dropped, the rest plays
                    playback.push(
                        sender, packet.seq, packet.timestamp, packet.payload, time.monotonic()
                    )

        receiver = asyncio.create_task(receive())
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            for n in range(int(seconds * 50)):
                await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - loop.time()))
                frames.append(playback.pop_int16(time.monotonic()))
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(48000)
        wav.writeframes(np.concatenate(frames).tobytes() if frames else b"")


async def main(
    url: str, username: str, password: str, channel: str, out: str, seconds: str
) -> None:
    async with Client(url, user_agent="record-bot/1.0") as chat:
        try:
            await chat.login(username, password)
        except AuthError:
            await chat.register(username, password)
        await record(chat, channel, Path(out), float(seconds))


if __name__ == "__main__":
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    asyncio.run(main(*sys.argv[1:7]))
