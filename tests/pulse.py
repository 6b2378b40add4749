"""A private PulseAudio daemon with virtual sound cards, for tests of the client's audio.

Import the fixture in the conftest.py of a test package that needs it::

    from tests.pulse import pulse_audio  # noqa: F401  (the session fixture)

    def test_something(pulse_audio: PulseAudio) -> None:
        alice = pulse_audio.add_card("alice")
        engine = VoiceEngine(call, AudioConfig(input_device=alice.input_device,
                                               output_device=alice.output_device))
        player = pulse_audio.play(alice.mic_sink, tone)          # alice "speaks"
        recording = pulse_audio.record(alice.speaker_monitor)    # what alice's speaker plays
        ...
        pcm = recording.stop()                                   # float32, 48 kHz mono

`pulse_audio` (session scope) starts `pulseaudio` in its own runtime directory (nothing of the
machine's own sound setup is used or changed; it runs as the current user, root included, in
per-user mode, no `--system`), points this process at it (`PULSE_SERVER`, and
`ALSA_CONFIG_PATH` so PortAudio's ALSA host API sees one ALSA PCM per virtual device through
the ALSA pulse plugin), and kills it at the end of the session.

API of `PulseAudio`:

- `add_card(name) -> VirtualCard`: a virtual sound card for one client, made of two mono
  48 kHz null sinks, `vc_<name>_mic` and `vc_<name>_speaker`. `card.input_device` (the mic
  sink's monitor) and `card.output_device` (the speaker sink) are device names for
  `sounddevice` / `AudioConfig`; play into `card.mic_sink` to talk into the microphone, record
  `card.speaker_monitor` to hear the speaker.
- `add_link(mouth, ear) -> Link`: two cards whose microphone (`mouth`'s) and speaker (`ear`'s)
  are the left and right channels of one stereo null sink, `link.probe_sink`, so that
  `record(link.probe_monitor, channels=2)` captures both on one sample clock: left is what the
  mouth's microphone picks up, right what the ear's speaker plays. This measures
  mouth-to-ear latency sample-accurately. `link.mouth.mic_sink` still plays into the left
  channel only.
- `play(sink, pcm, rate=48000) -> Player`: plays float32/int16 mono PCM into a sink with
  `pacat` (`player.wait()` waits for the end, `player.stop()` cuts it off).
- `record(source, channels=1) -> Recording`: records a source with `pacat --record` until
  `recording.stop()`, which returns the samples as float32 (frames x channels for 2 channels).
- `pactl(*args) -> str`: any other `pactl` command against this daemon.

Cards are added with PortAudio re-initialised (`voicechat.sdk.audio.list_devices(refresh=
True)`), so add them before opening streams. Modules are unloaded by `remove_cards()` (the
`pulse_cards` fixture does it after each test).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.utils.dirs import service_dir
from voicechat.sdk.audio import list_devices

RATE = 48_000
#: What `start()` sets in this process's environment (restored by `stop()`).
CLIENT_ENV = ("PULSE_SERVER", "PULSE_RUNTIME_PATH", "ALSA_CONFIG_PATH")


@dataclass(frozen=True)
class VirtualCard:
    """One client's virtual microphone and speaker."""

    name: str
    input_device: str  # for sounddevice / AudioConfig.input_device
    output_device: str  # for sounddevice / AudioConfig.output_device
    mic_sink: str  # play here: the microphone hears it
    speaker_monitor: str  # record here: what the speaker plays


@dataclass(frozen=True)
class Link:
    """A mouth card's microphone and an ear card's speaker on one stereo sink's channels."""

    mouth: VirtualCard
    ear: VirtualCard
    probe_sink: str
    probe_monitor: str  # left: the mouth's microphone, right: the ear's speaker


class Player:
    """A `pacat` playback."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def wait(self, timeout: float = 30.0) -> None:
        self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(10)


class Recording:
    """A `pacat --record` to a raw file."""

    def __init__(self, process: subprocess.Popen[bytes], path: Path, channels: int) -> None:
        self.process = process
        self.path = path
        self.channels = channels

    def stop(self) -> NDArray[np.float32]:
        """End the recording; return float32 samples (frames x channels if stereo)."""
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(10)
        raw = np.frombuffer(self.path.read_bytes(), dtype="<f4").astype(np.float32)
        if self.channels > 1:
            return raw[: len(raw) - len(raw) % self.channels].reshape(-1, self.channels)
        return raw


class PulseAudio:
    """A private PulseAudio daemon; see the module docs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runtime = root / "runtime"
        self.alsa_conf = root / "asound.conf"
        self.env = {
            **os.environ,
            "PULSE_RUNTIME_PATH": str(self.runtime),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "PULSE_STATE_PATH": str(root / "state"),
            "HOME": str(root / "home"),
            "PULSE_SERVER": f"unix:{self.runtime / 'native'}",
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._modules: list[str] = []
        self._pcms: dict[str, str] = {}
        self._children: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for sub in ("runtime", "state", "home"):
            (self.root / sub).mkdir(mode=0o700)
        with (self.root / "pulseaudio.log").open("wb") as log:
            self._process = subprocess.Popen(
                [
                    "pulseaudio",
                    "--daemonize=no",
                    "--exit-idle-time=-1",
                    "-n",  # no default.pa: no hardware detection, nothing but what we load
                    "--load=module-native-protocol-unix",
                    "--log-target=stderr",
                    "--disallow-exit",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while True:
            if self._process.poll() is not None:
                raise AssertionError(
                    f"pulseaudio exited: {(self.root / 'pulseaudio.log').read_text()}"
                )
            probe = subprocess.run(["pactl", "info"], env=self.env, capture_output=True)
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise AssertionError("pulseaudio did not start")
            time.sleep(0.1)
        # Load the ALSA pulse plugin's PCMs on top of the system's ALSA configuration.
        self._write_alsa_conf()
        self._saved = {name: os.environ.get(name) for name in CLIENT_ENV}
        for name in ("PULSE_SERVER", "PULSE_RUNTIME_PATH"):
            os.environ[name] = self.env[name]
        os.environ["ALSA_CONFIG_PATH"] = f"/usr/share/alsa/alsa.conf:{self.alsa_conf}"
        list_devices(refresh=True)

    def stop(self) -> None:
        for child in self._children:
            if child.poll() is None:
                child.kill()
                child.wait()
        for name, value in getattr(self, "_saved", {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def pactl(self, *args: str) -> str:
        result = subprocess.run(
            ["pactl", *args], env=self.env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise AssertionError(f"pactl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout.strip()

    def _load(self, module: str, **args: str) -> None:
        self._modules.append(
            self.pactl("load-module", module, *(f"{k}={v}" for k, v in args.items()))
        )

    def _null_sink(self, name: str, channels: int = 1) -> None:
        channel_map = "mono" if channels == 1 else "front-left,front-right"
        self._load(
            "module-null-sink",
            sink_name=name,
            rate=str(RATE),
            channels=str(channels),
            channel_map=channel_map,
            sink_properties=f"device.description={name}",
        )

    def _write_alsa_conf(self) -> None:
        lines = [
            f'pcm.{pcm} {{ type pulse; device "{device}"; hint {{ show on; description "{pcm}" }} }}'  # noqa: E501
            for pcm, device in self._pcms.items()
        ]
        self.alsa_conf.write_text("\n".join(lines) + "\n")

    def _card(
        self, name: str, mic_source: str, speaker_sink: str, mic_sink: str, speaker_monitor: str
    ) -> VirtualCard:
        self._pcms[f"vc_{name}_input"] = mic_source
        self._pcms[f"vc_{name}_output"] = speaker_sink
        self._write_alsa_conf()
        list_devices(refresh=True)
        return VirtualCard(name, f"vc_{name}_input", f"vc_{name}_output", mic_sink, speaker_monitor)

    def add_card(self, name: str) -> VirtualCard:
        """A card with its own mono microphone and speaker sinks."""
        mic, speaker = f"vc_{name}_mic", f"vc_{name}_speaker"
        self._null_sink(mic)
        self._null_sink(speaker)
        return self._card(name, f"{mic}.monitor", speaker, mic, f"{speaker}.monitor")

    def add_link(self, mouth: str, ear: str) -> Link:
        """Cards `mouth` and `ear` whose microphone and speaker share one stereo sink."""
        probe = f"vc_{mouth}_{ear}_probe"
        self._null_sink(probe, channels=2)
        remaps = {
            f"vc_{mouth}_mic": ("module-remap-sink", probe, "front-left"),
            f"vc_{mouth}_mic_in": ("module-remap-source", f"{probe}.monitor", "front-left"),
            f"vc_{ear}_speaker": ("module-remap-sink", probe, "front-right"),
            f"vc_{ear}_speaker_out": ("module-remap-source", f"{probe}.monitor", "front-right"),
        }
        for name, (module, master, channel) in remaps.items():
            kind = "sink_name" if module == "module-remap-sink" else "source_name"
            self._load(
                module,
                **{kind: name},
                master=master,
                master_channel_map=channel,
                channels="1",
                channel_map="mono",
                remix="no",
            )
        mouth_speaker, ear_mic = f"vc_{mouth}_speaker", f"vc_{ear}_mic"
        self._null_sink(mouth_speaker)
        self._null_sink(ear_mic)
        mouth_card = self._card(
            mouth,
            f"vc_{mouth}_mic_in",
            mouth_speaker,
            f"vc_{mouth}_mic",
            f"{mouth_speaker}.monitor",
        )
        ear_card = self._card(
            ear, f"{ear_mic}.monitor", f"vc_{ear}_speaker", ear_mic, f"vc_{ear}_speaker_out"
        )
        return Link(mouth_card, ear_card, probe, f"{probe}.monitor")

    def remove_cards(self) -> None:
        """Unload every module added since start (newest first) and forget the PCMs."""
        for module in reversed(self._modules):
            subprocess.run(["pactl", "unload-module", module], env=self.env, capture_output=True)
        self._modules.clear()
        self._pcms.clear()
        self._write_alsa_conf()

    def play(
        self, sink: str, pcm: NDArray[np.float32] | NDArray[np.int16], rate: int = RATE
    ) -> Player:
        """Play mono PCM into `sink` with pacat."""
        data = (
            np.asarray(pcm, dtype=np.float32)
            if pcm.dtype != np.int16
            else (pcm.astype(np.float32) / 32768)
        )
        path = self.root / f"play-{time.monotonic_ns()}.raw"
        path.write_bytes(data.astype("<f4").tobytes())
        process = subprocess.Popen(
            [
                "pacat",
                "--playback",
                f"--device={sink}",
                "--format=float32le",
                f"--rate={rate}",
                "--channels=1",
                "--channel-map=mono",
                "--latency-msec=10",
                str(path),
            ],
            env=self.env,
        )
        self._children.append(process)
        return Player(process)

    def record(self, source: str, channels: int = 1) -> Recording:
        """Record `source` (float32, 48 kHz) until `Recording.stop()`."""
        path = self.root / f"record-{time.monotonic_ns()}.raw"
        channel_map = "mono" if channels == 1 else "front-left,front-right"
        process = subprocess.Popen(
            [
                "pacat",
                "--record",
                f"--device={source}",
                "--format=float32le",
                f"--rate={RATE}",
                f"--channels={channels}",
                f"--channel-map={channel_map}",
                "--latency-msec=10",
                "--raw",
                str(path),
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
        )
        self._children.append(process)
        return Recording(process, path, channels)


@pytest.fixture(scope="session")
def pulse_audio() -> Iterator[PulseAudio]:
    """A private PulseAudio daemon for the session (see the module docs)."""
    if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
        raise AssertionError("pulseaudio and pulseaudio-utils are needed (scripts/test.sh)")
    pulse = PulseAudio(service_dir("pulse"))
    try:
        pulse.start()
        yield pulse
    finally:
        pulse.stop()
        shutil.rmtree(pulse.root, ignore_errors=True)


@pytest.fixture
def pulse_cards(pulse_audio: PulseAudio) -> Iterator[PulseAudio]:
    """The session daemon; cards added during the test are removed after it."""
    yield pulse_audio
    pulse_audio.remove_cards()
