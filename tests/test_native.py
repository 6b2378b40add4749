"""The native extension module `voicechat._native`, as Python code sees it.

These run against the module built by `maturin develop` (no mocks): version check, the exception
hierarchy, `dsp.audio_level_dbov` on generated signals, `sfu.SfuConfig` validation.
"""

from __future__ import annotations

import array
import importlib.metadata
import inspect
import math
import pickle
import struct
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import voicechat
import voicechat._native as native
from voicechat._native import dsp, sfu

ROOT = Path(__file__).resolve().parents[1]

# One 20 ms frame at 48 kHz, as the client sends it.
FRAME = 960
FULL_SCALE = 32768.0


def s16le(samples: list[int]) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def sine(peak: float, frequency: float = 1000.0, rate: int = 48_000) -> list[int]:
    """One frame of a sine with the given peak amplitude (a whole number of periods)."""
    return [round(peak * math.sin(2 * math.pi * frequency * i / rate)) for i in range(FRAME)]


# --- version -------------------------------------------------------------------------------


def test_native_version_matches_package() -> None:
    assert native.__version__ == voicechat.__version__


def test_package_version_is_the_cargo_workspace_version() -> None:
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    assert voicechat.__version__ == cargo["workspace"]["package"]["version"]
    assert importlib.metadata.version("voicechat") == voicechat.__version__


def test_submodules_import_by_full_name() -> None:
    import voicechat._native.dsp
    import voicechat._native.sfu

    assert voicechat._native.dsp is dsp is sys.modules["voicechat._native.dsp"]
    assert voicechat._native.sfu is sfu is sys.modules["voicechat._native.sfu"]
    assert native.__file__ is not None
    assert ".abi3." in Path(native.__file__).name  # the compiled module, not the stub directory
    assert dsp.audio_level_dbov.__module__ == "voicechat._native.dsp"
    assert sfu.SfuConfig.__module__ == "voicechat._native.sfu"


# --- exceptions ----------------------------------------------------------------------------

HIERARCHY: list[tuple[type[Exception], type[Exception], type[Exception] | None]] = [
    (native.DspError, native.NativeError, None),
    (native.DspInputError, native.DspError, ValueError),
    (native.CodecError, native.DspError, None),
    (native.CorruptPacketError, native.DspError, ValueError),
    (native.SfuError, native.NativeError, None),
    (native.SfuConfigError, native.SfuError, ValueError),
    (native.InvalidSdpError, native.SfuError, ValueError),
    (native.RoomFullError, native.SfuError, None),
    (native.UnknownRoomError, native.SfuError, LookupError),
    (native.UnknownParticipantError, native.SfuError, LookupError),
    (native.SfuIoError, native.SfuError, OSError),
]


def test_native_error_is_a_plain_exception() -> None:
    assert native.NativeError.__bases__ == (Exception,)
    assert native.NativeError.__module__ == "voicechat._native"


@pytest.mark.parametrize(
    ("cls", "parent", "builtin"), HIERARCHY, ids=[c.__name__ for c, *_ in HIERARCHY]
)
def test_exception_hierarchy(
    cls: type[Exception], parent: type[Exception], builtin: type[Exception] | None
) -> None:
    expected_bases = (parent,) if builtin is None else (parent, builtin)
    assert cls.__bases__ == expected_bases
    assert issubclass(cls, native.NativeError)
    assert cls.__module__ == "voicechat._native"
    assert cls.__doc__
    assert getattr(native, cls.__name__) is cls
    assert cls.__name__ in native.__all__


@pytest.mark.parametrize("cls", [c for c, *_ in HIERARCHY], ids=lambda c: c.__name__)
def test_exceptions_pickle_by_name(cls: type[Exception]) -> None:
    # Errors cross process boundaries (worker pools, logging handlers) by pickle.
    err = cls("room r is full")
    copy = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own object
    assert type(copy) is cls
    assert copy.args == err.args


# --- dsp.audio_level_dbov ------------------------------------------------------------------


def test_silence_is_127() -> None:
    assert dsp.audio_level_dbov(bytes(2 * FRAME)) == 127 == dsp.SILENCE_DBOV
    assert dsp.audio_level_dbov(b"") == 127


def test_full_scale_square_is_0() -> None:
    square = [32767 if i % 2 == 0 else -32767 for i in range(FRAME)]
    assert dsp.audio_level_dbov(s16le(square)) == 0
    assert dsp.audio_level_dbov(s16le([-32768] * FRAME)) == 0


def test_full_scale_sine_is_3() -> None:
    assert dsp.audio_level_dbov(s16le(sine(32767))) == 3


def test_sine_at_minus_20_dbov_is_20() -> None:
    # RMS 20 dB below the full-scale square wave of RFC 6464.
    assert dsp.audio_level_dbov(s16le(sine(0.1 * FULL_SCALE * math.sqrt(2)))) == 20


def test_sine_peaking_at_minus_20_dbfs_is_23() -> None:
    # A sine's RMS is 3 dB below its peak.
    assert dsp.audio_level_dbov(s16le(sine(0.1 * FULL_SCALE))) == 23


def test_each_halving_of_amplitude_is_6_db() -> None:
    levels = [dsp.audio_level_dbov(s16le(sine(32767 / 2**k))) for k in range(8)]
    assert levels == [3 + 6 * k for k in range(8)]


def test_one_lsb_noise_floor_is_90() -> None:
    assert dsp.audio_level_dbov(s16le([1, -1] * (FRAME // 2))) == 90


def test_every_buffer_form_gives_the_same_level() -> None:
    samples = sine(5000.0, frequency=440.0)
    data = s16le(samples)
    expected = dsp.audio_level_dbov(data)
    typed = array.array("h", samples)
    forms: list[bytes | bytearray | memoryview | array.array[int]] = [
        bytearray(data),
        memoryview(data),
        typed,
        memoryview(typed),
        memoryview(data).cast("h"),
        memoryview(data).cast("h", [FRAME // 2, 2]),  # stereo: frames x channels
    ]
    for form in forms:
        assert dsp.audio_level_dbov(form) == expected, form


def test_strided_buffers_are_read_in_order() -> None:
    # Every other sample of a signal that alternates full scale and silence.
    loud_and_silent = array.array("h", [32767, 0] * FRAME)
    assert dsp.audio_level_dbov(memoryview(loud_and_silent)[::2]) == 0
    assert dsp.audio_level_dbov(memoryview(loud_and_silent)[1::2]) == 127


def test_odd_byte_length_is_a_dsp_input_error() -> None:
    with pytest.raises(native.DspInputError, match="even number of bytes") as caught:
        dsp.audio_level_dbov(b"\x00\x01\x02")
    assert isinstance(caught.value, native.DspError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("typecode", ["i", "f", "d", "H", "q"])
def test_items_other_than_int16_are_refused(typecode: str) -> None:
    with pytest.raises(native.DspInputError, match="sample format"):
        dsp.audio_level_dbov(array.array(typecode, [0, 1, 2]))


@pytest.mark.parametrize("value", ["abcd", 1234, None, [0, 1]])
def test_objects_without_the_buffer_protocol_are_a_type_error(value: object) -> None:
    with pytest.raises(TypeError):
        dsp.audio_level_dbov(value)  # type: ignore[arg-type]


def test_samples_are_positional_only() -> None:
    with pytest.raises(TypeError):
        dsp.audio_level_dbov(samples=b"")  # type: ignore[call-arg]


def test_levels_from_many_threads_agree() -> None:
    # The computation runs without the GIL; results must not depend on interleaving.
    frames = [s16le(sine(32767 / 2**k)) for k in range(8)] * 8
    expected = [dsp.audio_level_dbov(f) for f in frames]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(dsp.audio_level_dbov, frames)) == expected


# --- sfu.SfuConfig -------------------------------------------------------------------------

DEFAULTS = {
    "bind_ip": "127.0.0.1",
    "media_port": 10000,
    "public_ip": None,
    "worker_threads": 1,
    "max_users_per_room": 50,
    "ice_timeout": 30.0,
}


def test_config_defaults_are_the_documented_ones() -> None:
    config = sfu.SfuConfig()
    assert {name: getattr(config, name) for name in DEFAULTS} == DEFAULTS
    assert config.advertised_ip == "127.0.0.1"


def test_config_signature_shows_the_real_defaults() -> None:
    # The signature (help(), IDEs, stubtest) is written by hand in the binding; it must agree
    # with the defaults the Rust builder applies.
    parameters = inspect.signature(sfu.SfuConfig).parameters
    assert {name: p.default for name, p in parameters.items()} == DEFAULTS
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())


def test_config_keeps_given_values() -> None:
    config = sfu.SfuConfig(
        bind_ip="::",
        media_port=0,
        public_ip="203.0.113.7",
        worker_threads=4,
        max_users_per_room=100,
        ice_timeout=1.5,
    )
    assert config.bind_ip == "::"
    assert config.media_port == 0
    assert config.public_ip == "203.0.113.7"
    assert config.advertised_ip == "203.0.113.7"
    assert config.worker_threads == 4
    assert config.max_users_per_room == 100
    assert config.ice_timeout == 1.5
    assert sfu.SfuConfig(ice_timeout=5).ice_timeout == 5.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("media_port", 65536),
        ("media_port", -1),
        ("media_port", 2**80),
        ("worker_threads", 0),
        ("worker_threads", 65),
        ("worker_threads", -3),
        ("max_users_per_room", 0),
        ("max_users_per_room", 101),
        ("ice_timeout", 0.0),
        ("ice_timeout", 0.5),
        ("ice_timeout", 301.0),
        ("ice_timeout", -1.0),
        ("ice_timeout", math.nan),
        ("ice_timeout", math.inf),
        ("bind_ip", "localhost"),
        ("bind_ip", "256.0.0.1"),
        ("bind_ip", "239.1.2.3"),
        ("public_ip", "0.0.0.0"),  # noqa: S104 - a value under test, nothing binds
        ("public_ip", "not an address"),
    ],
)
def test_config_refuses_out_of_range_values(field: str, value: object) -> None:
    with pytest.raises(native.SfuConfigError, match=field) as caught:
        sfu.SfuConfig(**{field: value})  # type: ignore[arg-type]
    assert isinstance(caught.value, native.SfuError)
    assert isinstance(caught.value, ValueError)


def test_unspecified_bind_ip_needs_a_public_ip() -> None:
    with pytest.raises(native.SfuConfigError, match="public_ip"):
        sfu.SfuConfig(bind_ip="0.0.0.0")  # noqa: S104
    config = sfu.SfuConfig(bind_ip="0.0.0.0", public_ip="198.51.100.1")  # noqa: S104
    assert config.advertised_ip == "198.51.100.1"


@pytest.mark.parametrize(
    ("field", "value"),
    [("media_port", "10000"), ("worker_threads", 1.5), ("ice_timeout", "30"), ("bind_ip", 1)],
)
def test_config_wrong_types_are_type_errors(field: str, value: object) -> None:
    with pytest.raises(TypeError):
        sfu.SfuConfig(**{field: value})  # type: ignore[arg-type]


def test_config_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        sfu.SfuConfig("127.0.0.1")  # type: ignore[call-arg]


def test_config_is_frozen_final_and_hashable() -> None:
    config = sfu.SfuConfig(media_port=10050)
    with pytest.raises(AttributeError):
        config.media_port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        type("Sub", (sfu.SfuConfig,), {})
    assert config == sfu.SfuConfig(media_port=10050)
    assert config != sfu.SfuConfig()
    assert len({config, sfu.SfuConfig(media_port=10050), sfu.SfuConfig()}) == 2


def test_config_repr_evaluates_to_an_equal_config() -> None:
    config = sfu.SfuConfig(public_ip="2001:db8::1", max_users_per_room=8, ice_timeout=2.25)
    assert eval(repr(config), {"SfuConfig": sfu.SfuConfig}) == config  # noqa: S307


# --- dsp and sfu.VoiceLink defaults --------------------------------------------------------
# Each constructor's defaults live once, in the Rust config it builds (audio_dsp's EncoderConfig,
# VadConfig, JitterConfig, CaptureConfig and PlaybackConfig, voice_link's LinkConfig): the
# binding passes on only the arguments given. The signatures are written by hand in the binding,
# so these check that they show what a default-built object reports.

ENCODER_DEFAULTS: dict[str, object] = {
    "bitrate": 64000,
    "frame_ms": 20,
    "complexity": 10,
    "fec": True,
    "dtx": False,
    "expected_loss_percent": 0,
}
VAD_DEFAULTS: dict[str, object] = {
    "threshold_dbov": 50,
    "min_voice_probability": 0.5,
    "hangover": 0.3,
}
DSP_DEFAULTS: dict[type, dict[str, object]] = {
    dsp.OpusEncoder: {"channels": 1, **ENCODER_DEFAULTS},
    dsp.Denoiser: {"bypass": False},
    dsp.VoiceActivityDetector: VAD_DEFAULTS,
    dsp.JitterBuffer: {
        "min_delay": 0.02,
        "max_delay": 0.2,
        "clock_rate": 48000,
        "frame_samples": 960,
        "max_conceal": 0.1,
    },
    dsp.CapturePipeline: {
        **ENCODER_DEFAULTS,
        "denoise": True,
        "input_rate": 48000,
        **VAD_DEFAULTS,
        "initial_seq": 0,
        "initial_timestamp": 0,
    },
    dsp.PlaybackPipeline: {
        "frame_ms": 20,
        "output_rate": 48000,
        "min_delay": 0.02,
        "max_delay": 0.2,
        "max_conceal": 0.1,
    },
}
# Where the first packet's RTP fields start: seen in the packets, not as attributes.
FIRST_PACKET_FIELDS = {"initial_seq": "seq", "initial_timestamp": "timestamp"}
LINK_DEFAULTS: dict[str, object] = {
    "frame_ms": 20,
    "bitrate": 64000,
    "denoise": True,
    "push_to_talk": False,
    "min_delay": 0.02,
    "max_delay": 0.2,
    "output_lead": 0.006,
    "buffer": 1.0,
}


@pytest.mark.parametrize("cls", DSP_DEFAULTS, ids=lambda c: c.__name__)
def test_dsp_defaults_are_the_rust_configs(cls: type) -> None:
    defaults = DSP_DEFAULTS[cls]
    built = cls()
    reported = {name: getattr(built, name) for name in defaults if name not in FIRST_PACKET_FIELDS}
    assert reported == {k: v for k, v in defaults.items() if k not in FIRST_PACKET_FIELDS}


@pytest.mark.parametrize("cls", DSP_DEFAULTS, ids=lambda c: c.__name__)
def test_dsp_signatures_show_the_real_defaults(cls: type) -> None:
    parameters = inspect.signature(cls).parameters
    assert {name: p.default for name, p in parameters.items()} == DSP_DEFAULTS[cls]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())


def test_capture_pipeline_first_packet_starts_at_the_default_rtp_fields() -> None:
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(FRAME) / 48_000)
    packets = dsp.CapturePipeline().push(tone.astype(np.float32))
    assert len(packets) == 1
    defaults = DSP_DEFAULTS[dsp.CapturePipeline]
    for argument, field in FIRST_PACKET_FIELDS.items():
        assert getattr(packets[0], field) == defaults[argument]


def test_voice_link_defaults_are_the_link_config() -> None:
    peer = sfu.Peer()
    link = sfu.VoiceLink(peer)
    try:
        assert {name: getattr(link, name) for name in LINK_DEFAULTS} == LINK_DEFAULTS
    finally:
        link.close()
        peer.close()


def test_voice_link_signature_shows_the_real_defaults() -> None:
    parameters = inspect.signature(sfu.VoiceLink).parameters
    peer, *options = parameters.values()
    assert peer.name == "peer"
    assert peer.default is inspect.Parameter.empty
    assert {p.name: p.default for p in options} == LINK_DEFAULTS
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in options)
