"""Play a WAV file into a voice channel.

    python examples/play_wav_bot.py http://127.0.0.1:8080 botname 'bot password' Lounge music.wav

The WAV must be 16-bit PCM (mono or stereo, any rate: it is mixed to mono and resampled to
48 kHz). The bot registers on first run, joins the voice channel named on the command line,
sends the file in real time as Opus, and leaves.
"""

from __future__ import annotations

import asyncio
import sys
import wave
from pathlib import Path

import numpy as np

from voicechat._native.dsp import OpusEncoder, Resampler, audio_level_dbov
from voicechat.sdk import AuthError, Client
from voicechat.sdk.voice import VoiceCall

FRAME = 960  # 20 ms at 48 kHz


def read_wav(path: Path) -> np.ndarray:
    """The file as mono 48 kHz int16."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise SystemExit(f"{path}: only 16-bit PCM WAV files are supported")
        rate, channels = wav.getframerate(), wav.getnchannels()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    mono = pcm.reshape(-1, channels).mean(axis=1).astype(np.int16)
    if rate != 48000:
        resampler = Resampler(rate, 48000)
        mono = np.concatenate(
            [resampler.process(mono), resampler.process(np.zeros(rate // 10, np.int16))]
        )
    return mono


async def play(chat: Client, channel_name: str, path: Path) -> None:
    """Join `channel_name` and play the file once, in real time."""
    pcm = read_wav(path)
    channel = await chat.channel_by_name(channel_name)
    encoder = OpusEncoder(bitrate=64000, frame_ms=20)
    async with VoiceCall(chat, channel.id) as call:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n, offset in enumerate(range(0, len(pcm) - FRAME + 1, FRAME)):
            frame = pcm[offset : offset + FRAME]
            call.send(encoder.encode(frame), audio_level_dbov(frame.tobytes()))
            # Pace against the clock, not the previous sleep, so delays do not accumulate.
            await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - loop.time()))


async def main(url: str, username: str, password: str, channel: str, wav: str) -> None:
    async with Client(url, user_agent="play-wav-bot/1.0") as chat:
        try:
            await chat.login(username, password)
        except AuthError:
            await chat.register(username, password)
        await play(chat, channel, Path(wav))


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    asyncio.run(main(*sys.argv[1:6]))
