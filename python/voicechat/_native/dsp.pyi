"""Audio processing on 16-bit PCM frames (the Rust audio_dsp crate).

Functions release the GIL while they compute; errors derive from
`voicechat._native.DspError`.
"""

from typing import Final

from typing_extensions import Buffer

__all__ = ["SILENCE_DBOV", "audio_level_dbov"]

SILENCE_DBOV: Final[int]
"""The level `audio_level_dbov` returns for silence (127)."""

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
