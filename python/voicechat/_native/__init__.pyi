"""Native core of voicechat: audio DSP (`dsp`) and the SFU media plane (`sfu`).

The compiled extension module `voicechat/_native.abi3.so` (built from
`crates/voicechat_native` by maturin) is what Python imports; this directory only holds its
type stubs, one file per module, because a single `_native.pyi` cannot describe submodules.
See docs/native.md.

Import the submodules as `from voicechat._native import dsp, sfu` or
`import voicechat._native.dsp`. Every exception raised by the native code derives from
`NativeError`; argument errors also derive from the builtin `ValueError`, so callers can catch
them the usual way.

Exception hierarchy::

    NativeError
    ├── DspError
    │   ├── DspInputError (ValueError)
    │   ├── CodecError
    │   └── CorruptPacketError (ValueError)
    └── SfuError
        ├── SfuConfigError (ValueError)
        ├── InvalidSdpError (ValueError)
        ├── RoomFullError
        ├── UnknownRoomError (LookupError)
        ├── UnknownParticipantError (LookupError)
        ├── SfuIoError (OSError)
        ├── ParticipantExistsError
        ├── InvalidIdError (ValueError)
        └── SfuStoppedError
"""

from voicechat._native import dsp as dsp
from voicechat._native import sfu as sfu

__all__ = [
    "CodecError",
    "CorruptPacketError",
    "DspError",
    "DspInputError",
    "InvalidIdError",
    "InvalidSdpError",
    "NativeError",
    "ParticipantExistsError",
    "RoomFullError",
    "SfuConfigError",
    "SfuError",
    "SfuIoError",
    "SfuStoppedError",
    "UnknownParticipantError",
    "UnknownRoomError",
    "dsp",
    "sfu",
]

__version__: str
"""Version of the crates the module was built from; `voicechat` refuses to import when it
differs from the package version."""

class NativeError(Exception):
    """Base class of every error raised by voicechat._native."""

class DspError(NativeError):
    """An audio processing error (the Rust audio_dsp crate)."""

class DspInputError(DspError, ValueError):
    """Audio or a parameter the operation cannot accept.

    Raised for a byte buffer that is not a whole number of 16-bit samples, an unsupported
    sample format or rate, or a value outside its range.
    """

class CodecError(DspError):
    """The Opus codec failed to encode or decode."""

class CorruptPacketError(DspError, ValueError):
    """A received packet could not be parsed."""

class SfuError(NativeError):
    """An SFU media plane error (the Rust sfu_core crate)."""

class SfuConfigError(SfuError, ValueError):
    """An SFU configuration value outside its accepted range."""

class InvalidSdpError(SfuError, ValueError):
    """An SDP offer or answer that could not be parsed or negotiated."""

class RoomFullError(SfuError):
    """The room already holds its maximum number of participants."""

class UnknownRoomError(SfuError, LookupError):
    """No room with this id exists in the SFU."""

class UnknownParticipantError(SfuError, LookupError):
    """No participant with this id is in the room."""

class SfuIoError(SfuError, OSError):
    """A socket operation of the SFU failed.

    `errno` and `strerror` are set when the operating system reported an error code.
    """

class ParticipantExistsError(SfuError):
    """A participant with this id is already in a room."""

class InvalidIdError(SfuError, ValueError):
    """A room or participant id that is empty, longer than 64 characters, or has characters
    other than A-Z a-z 0-9 _ . -."""

class SfuStoppedError(SfuError):
    """The SFU or peer was closed; its media thread has stopped."""
