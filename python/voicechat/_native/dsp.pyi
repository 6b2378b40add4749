"""Audio processing: Opus, denoising, levels and voice activity, jitter buffering,
resampling and mixing (the Rust audio_dsp crate).

Audio is a NumPy array of int16 PCM or float32 in [-1, 1] (1-D, or 2-D frames x channels,
read in C order), interleaved if stereo, at 48 kHz unless a rate is given. Every call copies
its input out of the array while holding the GIL, then releases the GIL for the work and
returns new arrays. Errors derive from `voicechat._native.DspError`: bad input raises
`DspInputError` (also a `ValueError`), a malformed packet `CorruptPacketError` (also a
`ValueError`), an object that is not an array `TypeError`.

Times (`arrival`, `now`) are seconds on any monotonic clock the caller chooses, the same for
every call on one object (e.g. `time.monotonic()`); the DSP never reads a clock itself.

Constructor defaults are those of the Rust configs (`EncoderConfig`, `VadConfig`,
`JitterConfig`, `CaptureConfig`, `PlaybackConfig`); each object reports its settings back as
read-only properties.
"""

from typing import Final, Literal, final

import numpy as np
from numpy.typing import NDArray
from typing_extensions import Buffer

__all__ = [
    "SAMPLE_RATE",
    "SILENCE_DBOV",
    "CapturePipeline",
    "CapturedPacket",
    "Denoiser",
    "JitterBuffer",
    "OpusDecoder",
    "OpusEncoder",
    "PlaybackPipeline",
    "Playout",
    "Resampler",
    "VoiceActivityDetector",
    "audio_level_dbov",
    "libopus_version",
    "mix",
    "packet_samples",
]

_Samples = NDArray[np.int16] | NDArray[np.float32]
_PushOutcome = Literal["buffered", "duplicate", "late"]

SILENCE_DBOV: Final[int]
"""The level `audio_level_dbov` returns for silence (127)."""

SAMPLE_RATE: Final[int]
"""The codec's and the pipelines' sample rate: 48000 Hz."""

def audio_level_dbov(samples: Buffer, /) -> int:
    """Return the RFC 6464 audio level of one frame of 16-bit PCM, in -dBov.

    The level is the frame's RMS power relative to a full-scale square wave, negated and
    rounded: 0 is as loud as 16-bit PCM gets, a full-scale sine is 3, and 127 is silence or
    anything quieter than -127 dBov. An empty frame is silence. This is the value carried by
    the RTP audio level header extension and used for speaking detection. The computation runs
    without holding the GIL.

    Args:
        samples: One frame (usually 10-60 ms) of signed 16-bit PCM, interleaved if stereo:
            `bytes`, `bytearray` or `memoryview` holding little-endian samples (s16le), or a
            buffer of int16 items such as `array.array("h", ...)` or a NumPy int16 array.

    Returns:
        The level, from 0 to 127.

    Raises:
        DspInputError: `samples` holds an odd number of bytes, or items that are neither
            bytes nor 16-bit integers.
        TypeError: `samples` does not support the buffer protocol.
    """

def libopus_version() -> str:
    """Return the version of the statically linked libopus, e.g. `'libopus 1.6.1'`."""

def packet_samples(packet: bytes, /) -> int:
    """Return an Opus packet's duration in samples per channel at 48 kHz.

    Raises:
        CorruptPacketError: The packet is empty or malformed.
    """

def mix(streams: list[_Samples], /, gains: list[float] | None = None) -> _Samples:
    """Mix streams with per-stream gains, then soft-limit so the sum never clips.

    Samples up to -3 dBFS pass unchanged; louder ones bend smoothly (tanh) towards full
    scale. Shorter streams count as silence past their end.

    Args:
        streams: Arrays of one dtype (all int16 or all float32).
        gains: Linear gain per stream, 0 to 4 (+12 dB); default 1 each.

    Returns:
        The mix, as long as the longest stream, in the streams' dtype.

    Raises:
        DspInputError: Mixed dtypes, a gain outside 0-4, or as many gains as streams.
    """

@final
class OpusEncoder:
    """An Opus encoder at 48 kHz (libopus, VoIP mode).

    Args:
        channels: 1 (mono) or 2 (stereo, interleaved).
        bitrate: Target bitrate, 24000 to 96000 bit/s.
        frame_ms: Frame duration: 10, 20, 40 or 60 ms.
        complexity: 0 (cheapest) to 10 (best).
        fec: In-band forward error correction: each packet also carries a coarse copy of
            the previous frame, which the receiver can decode when that one is lost.
        dtx: Discontinuous transmission: silent frames shrink to 1-2 byte packets.
        expected_loss_percent: Expected packet loss, 0 to 100; with FEC on, more loss makes
            the encoder spend more bits on redundancy.

    Raises:
        DspInputError: A value outside its range.
    """

    def __new__(
        cls,
        *,
        channels: int = 1,
        bitrate: int = 64000,
        frame_ms: int = 20,
        complexity: int = 10,
        fec: bool = True,
        dtx: bool = False,
        expected_loss_percent: int = 0,
    ) -> OpusEncoder: ...
    def encode(self, pcm: _Samples, /) -> bytes:
        """Encode exactly one frame (`frame_samples` x `channels` samples) into a packet.

        Raises:
            DspInputError: Not exactly one frame, another dtype, or non-finite floats.
            TypeError: `pcm` is not a NumPy array.
        """
    def set_bitrate(self, bitrate: int) -> None:
        """Change the target bitrate (24000 to 96000 bit/s)."""
    def set_expected_loss_percent(self, percent: int) -> None:
        """Change the expected packet loss (0 to 100 percent)."""
    @property
    def channels(self) -> int:
        """Channels, 1 or 2."""
    @property
    def bitrate(self) -> int:
        """Target bitrate in bit/s."""
    @property
    def frame_ms(self) -> int:
        """Frame duration in ms."""
    @property
    def frame_samples(self) -> int:
        """Samples per channel in one frame (48 x frame_ms)."""
    @property
    def complexity(self) -> int:
        """Complexity, 0 to 10."""
    @property
    def fec(self) -> bool:
        """Whether in-band FEC is on."""
    @property
    def dtx(self) -> bool:
        """Whether DTX is on."""
    @property
    def expected_loss_percent(self) -> int:
        """Expected packet loss in percent."""
    @property
    def lookahead(self) -> int:
        """The encoder's algorithmic delay in samples per channel (312 at 48 kHz)."""

@final
class OpusDecoder:
    """An Opus decoder at 48 kHz with packet loss concealment and FEC recovery.

    Args:
        channels: Output channels, 1 or 2.
    """

    def __new__(cls, channels: int = 1) -> OpusDecoder: ...
    def decode(self, packet: bytes, /) -> NDArray[np.int16]:
        """Decode one packet to int16 PCM (interleaved if stereo).

        Raises:
            CorruptPacketError: The packet is empty or malformed; the decoder is unaffected.
        """
    def decode_float(self, packet: bytes, /) -> NDArray[np.float32]:
        """Decode one packet to float32 in [-1, 1]; raises as `decode`."""
    def conceal(self, samples: int | None = None) -> NDArray[np.int16]:
        """Conceal one lost frame of `samples` per channel (default: the last frame's length).

        Raises:
            DspInputError: `samples` is not a multiple of 120 (2.5 ms) up to 5760 (120 ms).
        """
    def decode_fec(self, next_packet: bytes, /, samples: int | None = None) -> NDArray[np.int16]:
        """Rebuild a lost frame from the in-band FEC of the packet that followed it.

        Decode `next_packet` itself normally afterwards. Without FEC in it, this conceals.

        Raises:
            CorruptPacketError: `next_packet` is empty or malformed.
            DspInputError: As for `conceal`.
        """
    @property
    def channels(self) -> int:
        """Output channels."""

@final
class Denoiser:
    """RNNoise noise suppression (nnnoiseless) for one 48 kHz mono stream.

    Takes blocks of any length and returns as many samples. Blocks that are whole multiples
    of 480 samples (10 ms) add no buffering delay; the first block that is not switches the
    denoiser to a FIFO with 480 samples (10 ms) of delay for good. RNNoise itself delays its
    output by 10 ms more while denoising (not in bypass).

    Args:
        bypass: Start with noise suppression off (audio passes through unchanged).
    """

    def __new__(cls, *, bypass: bool = False) -> Denoiser: ...
    def process(self, samples: _Samples, /) -> tuple[_Samples, float]:
        """Denoise a block; return it in the input's dtype, with the highest voice
        probability (0-1) of the 10 ms frames processed during the call.

        Raises:
            DspInputError: Another dtype, more than 2 dimensions, or non-finite floats.
            TypeError: `samples` is not a NumPy array.
        """
    @property
    def bypass(self) -> bool:
        """Whether noise suppression is off; settable."""
    @bypass.setter
    def bypass(self, value: bool) -> None: ...
    @property
    def voice_probability(self) -> float:
        """RNNoise's voice probability for the last processed 10 ms frame."""
    @property
    def latency(self) -> int:
        """Delay the buffering adds, in samples: 0 or 480. RNNoise itself delays its output
        by another 480 samples (10 ms) when not bypassed."""

@final
class VoiceActivityDetector:
    """Speaking detection with hangover, for speaking indicators and DTX.

    A frame is speech when its RFC 6464 level is at most `threshold_dbov` (louder than
    -threshold_dbov dBov) and, if a voice probability is given, it reaches
    `min_voice_probability`. The decision stays True for `hangover` seconds after.

    Args:
        threshold_dbov: Level threshold, 0 to 127.
        min_voice_probability: 0 to 1.
        hangover: Seconds, up to 5.

    Raises:
        DspInputError: A value outside its range.
    """

    def __new__(
        cls, *, threshold_dbov: int = 50, min_voice_probability: float = 0.5, hangover: float = 0.3
    ) -> VoiceActivityDetector: ...
    def process(
        self, frame: _Samples, /, voice_probability: float | None = None
    ) -> tuple[int, bool]:
        """Judge one 48 kHz mono frame; return (RFC 6464 level, speaking).

        Raises:
            DspInputError: An empty frame or another dtype.
        """
    @property
    def speaking(self) -> bool:
        """The current decision."""
    @property
    def threshold_dbov(self) -> int:
        """Level (RFC 6464, -dBov) at or below which a frame may be speech."""
    @property
    def min_voice_probability(self) -> float:
        """Voice probability a frame needs, when one is given."""
    @property
    def hangover(self) -> float:
        """Seconds the decision stays "speaking" after the last speech frame."""

@final
class Resampler:
    """A streaming fixed-ratio resampler (rubato, FFT based) for devices not at 48 kHz.

    Input is consumed in 10 ms chunks; each call returns the output ready so far (over time
    exactly rate_out/rate_in times the input). Equal rates pass audio through.

    Args:
        rate_in: Input rate, 8000 to 192000 Hz.
        rate_out: Output rate, 8000 to 192000 Hz.
        channels: 1 or 2 (interleaved).
    """

    def __new__(cls, rate_in: int, rate_out: int, channels: int = 1) -> Resampler: ...
    def process(self, samples: _Samples, /) -> _Samples:
        """Resample a block; return the output ready so far, in the input's dtype."""
    @property
    def rate_in(self) -> int:
        """Input rate in Hz."""
    @property
    def rate_out(self) -> int:
        """Output rate in Hz."""
    @property
    def delay(self) -> int:
        """Delay in output samples per channel."""

@final
class Playout:
    """What a JitterBuffer says to play next: a packet to decode, or a lost frame."""

    @property
    def lost(self) -> bool:
        """True for a missing frame: conceal it, or rebuild it from `payload` (FEC)."""
    @property
    def seq(self) -> int | None:
        """Sequence number of the packet to decode; None for a lost frame."""
    @property
    def timestamp(self) -> int | None:
        """RTP timestamp of the packet to decode; None for a lost frame."""
    @property
    def samples(self) -> int:
        """Duration in samples per channel."""
    @property
    def payload(self) -> bytes | None:
        """The packet to decode; for a lost frame the next packet (for FEC), or None."""

@final
class JitterBuffer:
    """The adaptive jitter buffer of one incoming RTP stream (sans-IO).

    See docs/audio.md for the model: playout is pulled by `pop`; reordering within the delay
    is invisible; duplicates and late packets are counted and dropped; a missing frame comes
    out as a lost Playout (with the next packet for FEC when it is here); the target delay
    follows the 98th percentile of the observed delay variation, between `min_delay` and
    `max_delay`; sender clock drift is absorbed by dropping or inserting frames.

    Args:
        min_delay: Smallest target delay in seconds.
        max_delay: Largest target delay in seconds (at most 1).
        clock_rate: RTP clock rate in Hz.
        frame_samples: Frame duration assumed until packets give one.
        max_conceal: Seconds of concealment with nothing buffered before going idle.
    """

    def __new__(
        cls,
        *,
        min_delay: float = 0.02,
        max_delay: float = 0.2,
        clock_rate: int = 48000,
        frame_samples: int = 960,
        max_conceal: float = 0.1,
    ) -> JitterBuffer: ...
    def push(
        self, seq: int, timestamp: int, payload: bytes, arrival: float, *, duration: int = 0
    ) -> _PushOutcome:
        """Add a packet that arrived at `arrival` (seconds); `duration` is its length in
        clock-rate units if known. Return what happened to it."""
    def pop(self, now: float) -> Playout | None:
        """Return what to play at `now` (seconds), or None to play silence."""
    def stats(self) -> dict[str, float]:
        """Counters (`received`, `played`, `late`, `lost`, `concealed`, `fec`, `duplicates`,
        `dropped`, `stretched`) and delays in seconds (`target_delay`, `current_delay`,
        `buffered`, `jitter`)."""
    @property
    def target_delay(self) -> float:
        """The delay the buffer aims for, in seconds."""
    @property
    def min_delay(self) -> float:
        """Smallest target delay, seconds."""
    @property
    def max_delay(self) -> float:
        """Largest target delay, seconds."""
    @property
    def clock_rate(self) -> int:
        """RTP clock rate of the timestamps, Hz."""
    @property
    def frame_samples(self) -> int:
        """Frame duration assumed before packets give one, in timestamp units."""
    @property
    def max_conceal(self) -> float:
        """Seconds of concealment after which a dry buffer goes idle."""
    def __len__(self) -> int: ...

@final
class CapturedPacket:
    """One encoded frame from a CapturePipeline, ready for an RTP packet."""

    @property
    def seq(self) -> int:
        """RTP sequence number (consecutive over sent packets)."""
    @property
    def timestamp(self) -> int:
        """RTP timestamp at 48 kHz (advances over unsent DTX frames too)."""
    @property
    def marker(self) -> bool:
        """RTP marker bit: the first packet of a talk spurt."""
    @property
    def payload(self) -> bytes:
        """The Opus packet."""
    @property
    def level(self) -> int:
        """RFC 6464 level of the denoised frame, 0 to 127 -dBov."""
    @property
    def voice(self) -> bool:
        """RFC 6464 voice activity flag: speaking, with hangover."""

@final
class CapturePipeline:
    """Microphone to packets: resample → denoise → level/voice activity → Opus encode.

    Mono. Takes blocks of any length at `input_rate`; returns packets as frames complete.
    With `dtx`, frames are not sent while the speaker is silent (after the hangover).

    Args:
        bitrate, frame_ms, complexity, fec, dtx, expected_loss_percent: As `OpusEncoder`.
        denoise: Whether noise suppression runs (settable later).
        input_rate: The microphone's rate; anything but 48000 is resampled.
        threshold_dbov, min_voice_probability, hangover: As `VoiceActivityDetector`.
        initial_seq, initial_timestamp: First RTP sequence number and timestamp (RFC 3550
            says random).

    Raises:
        DspInputError: A value outside its range.
    """

    def __new__(
        cls,
        *,
        bitrate: int = 64000,
        frame_ms: int = 20,
        complexity: int = 10,
        fec: bool = True,
        dtx: bool = False,
        expected_loss_percent: int = 0,
        denoise: bool = True,
        input_rate: int = 48000,
        threshold_dbov: int = 50,
        min_voice_probability: float = 0.5,
        hangover: float = 0.3,
        initial_seq: int = 0,
        initial_timestamp: int = 0,
    ) -> CapturePipeline: ...
    def push(self, samples: _Samples, /) -> list[CapturedPacket]:
        """Take a mono block of any length; return the packets of the frames it completed."""
    @property
    def denoise(self) -> bool:
        """Whether noise suppression runs; settable."""
    @denoise.setter
    def denoise(self, value: bool) -> None: ...
    @property
    def speaking(self) -> bool:
        """The current speaking decision."""
    @property
    def bitrate(self) -> int:
        """The encoder's target bitrate in bit/s."""
    @property
    def frame_ms(self) -> int:
        """Frame duration in ms."""
    @property
    def complexity(self) -> int:
        """Encoder complexity, 0 to 10."""
    @property
    def fec(self) -> bool:
        """Whether in-band FEC is on."""
    @property
    def dtx(self) -> bool:
        """Whether DTX is on."""
    @property
    def expected_loss_percent(self) -> int:
        """The encoder's expected packet loss in percent."""
    @property
    def input_rate(self) -> int:
        """The microphone's sample rate, Hz."""
    @property
    def threshold_dbov(self) -> int:
        """Speaking detection: level (RFC 6464, -dBov) at or below which a frame may be speech."""
    @property
    def min_voice_probability(self) -> float:
        """Speaking detection: voice probability a frame needs while denoising."""
    @property
    def hangover(self) -> float:
        """Speaking detection: seconds of hangover after the last speech frame."""
    def set_bitrate(self, bitrate: int) -> None:
        """Change the encoder's bitrate (24000 to 96000 bit/s)."""
    def set_expected_loss_percent(self, percent: int) -> None:
        """Change the encoder's expected packet loss (0 to 100 percent)."""
    def stats(self) -> dict[str, int]:
        """`frames` encoded, `packets` produced, `dtx_frames` withheld."""

@final
class PlaybackPipeline:
    """Packets per sender to mixed output frames: jitter buffer → Opus decode (PLC/FEC) →
    mix with per-sender gain and a soft limiter → resample to the device rate.

    Args:
        frame_ms: Output frame duration: 10, 20, 40 or 60 ms.
        output_rate: The sound card's rate; anything but 48000 is resampled.
        min_delay, max_delay, max_conceal: Jitter buffer settings, as `JitterBuffer`.

    Raises:
        DspInputError: A value outside its range.
    """

    def __new__(
        cls,
        *,
        frame_ms: int = 20,
        output_rate: int = 48000,
        min_delay: float = 0.02,
        max_delay: float = 0.2,
        max_conceal: float = 0.1,
    ) -> PlaybackPipeline: ...
    def push(
        self, sender: int, seq: int, timestamp: int, payload: bytes, arrival: float
    ) -> _PushOutcome:
        """Add a packet from `sender` (e.g. its SSRC) that arrived at `arrival` (seconds).

        Raises:
            CorruptPacketError: The payload is empty or not an Opus packet; it is dropped.
        """
    def pop(self, now: float) -> NDArray[np.float32]:
        """Return the next mixed output frame at `now` (seconds), float32 in [-1, 1]."""
    def pop_int16(self, now: float) -> NDArray[np.int16]:
        """As `pop`, as int16 PCM."""
    def set_gain(self, sender: int, gain: float) -> None:
        """Set a sender's volume: 0 (muted) to 4 (+12 dB); 1 leaves it unchanged."""
    def remove(self, sender: int) -> bool:
        """Forget a sender; return whether it was known."""
    def senders(self) -> list[int]:
        """Senders with a stream, ascending."""
    def stats(self, sender: int) -> dict[str, float] | None:
        """A sender's jitter buffer counters (see `JitterBuffer.stats`), or None."""
    def levels(self) -> list[tuple[int, int]]:
        """(sender, RFC 6464 level of its last frame) for speaking indicators."""
    @property
    def frame_samples(self) -> int:
        """Samples in each output frame, at the output rate."""
    @property
    def frame_ms(self) -> int:
        """Duration of each output frame in ms."""
    @property
    def output_rate(self) -> int:
        """The sound card's sample rate, Hz."""
    @property
    def min_delay(self) -> float:
        """Smallest jitter buffer target delay, seconds."""
    @property
    def max_delay(self) -> float:
        """Largest jitter buffer target delay, seconds."""
    @property
    def max_conceal(self) -> float:
        """Seconds of concealment after which a sender's dry buffer goes idle."""
