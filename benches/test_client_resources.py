"""The desktop client's resources against SPEC §9's targets and a bare Kivy app, same run.

Each process runs under its own Xvfb (mesa llvmpipe, software OpenGL) through
`tests.gui.probe`, which counts the window's frames and reports the first one:

- `reference`: a bare Kivy app showing one label, with the client's Kivy settings;
- `client`: the real client (`VoicechatApp`) resuming a stored session against a live server,
  showing a channel with history; idle, then in a voice channel where an SDK bot talks and a
  tone plays into the client's own microphone, so audio flows both ways. Its sound devices are
  a virtual card on a private PulseAudio daemon (tests/pulse.py: null sinks, through PortAudio's
  ALSA pulse plugin), so the capture and playback pipelines run as on a desktop;
- `package`: the size of the PyInstaller folder and archive (`scripts/package_client.sh`, run
  first if `dist/voicechat-client` is missing).

Figures per row, in `extra_info` and printed: launch -> first frame and -> first screen drawn
(median of STARTS launches), RSS and USS (`/proc/<pid>/smaps_rollup`: Rss, and
Private_Clean + Private_Dirty; median and peak of one reading a second) after settling, CPU %
of one core over WINDOW seconds
(`/proc/<pid>/stat` utime + stime), frames drawn per second over the same window. The time
pytest-benchmark shows is the length of the whole measurement. Run:
`scripts/bench.sh -k client_resources`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import statistics
import subprocess
import tarfile
import time
import wave
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.conftest import LiveServer
from tests.gui.conftest import x_display  # noqa: F401  (fixture: a private Xvfb)
from tests.gui.probe import ROOT, Probe
from tests.gui.test_idle import client_env, settled, stored_login
from tests.pulse import PulseAudio, pulse_audio  # noqa: F401  (fixture)
from voicechat.sdk import Client
from voicechat.sdk.app import ClientSettings

pytestmark = pytest.mark.slow

STARTS = 3  # launches for the start-up figure
WINDOW = 10.0  # seconds of CPU / frame measurement
TARGETS = {  # SPEC §9
    "rss_idle_mib": 80,
    "rss_voice_mib": 120,
    "cpu_idle_percent": 1,
    "cpu_voice_percent": 5,
    "package_mib": 50,
    "startup_s": 3,
}
RESULTS: dict[str, dict[str, Any]] = {}
PACKAGED = ROOT / "dist" / "voicechat-client" / "voicechat-client"


def _play_wav_bot() -> ModuleType:
    path = ROOT / "examples" / "play_wav_bot.py"
    spec = importlib.util.spec_from_file_location("play_wav_bot", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _speechlike(seconds: float, rate: int = 48000) -> np.ndarray:
    """A 440 Hz tone switched on and off every 0.4 s, like talk, as int16."""
    t = np.arange(int(seconds * rate)) / rate
    gate = (np.floor(t / 0.4) % 2 == 0).astype(np.float64)
    return (0.3 * 32767 * gate * np.sin(2 * np.pi * 440.0 * t)).astype(np.int16)


def _write_wav(path: Path, pcm: np.ndarray, rate: int = 48000) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())
    return path


async def _window(probe: Probe) -> dict[str, float]:
    """CPU % and frames per second over WINDOW seconds, then memory."""
    frames, cpu, wall = probe.frames(), probe.cpu_seconds(), time.monotonic()
    threads = probe.thread_cpu_seconds()
    # Memory once a second: Mesa and the allocator give tens of MiB back now and then.
    samples = []
    for _ in range(int(WINDOW)):
        await asyncio.sleep(1.0)
        samples.append(probe.memory())
    frames, cpu, wall = (
        probe.frames() - frames,
        probe.cpu_seconds() - cpu,
        time.monotonic() - wall,
    )
    # By thread id, then added up by name: a thread started meanwhile counts from zero, one
    # that ended meanwhile is missing (its time is in the process's total only).
    per_thread: dict[str, float] = {}
    for tid, (name, seconds) in probe.thread_cpu_seconds().items():
        spent = seconds - threads.get(tid, (name, 0.0))[1]
        per_thread[name] = round(per_thread.get(name, 0.0) + 100 * spent / wall, 2)
    rss = statistics.median(rss for rss, _ in samples)
    uss = statistics.median(uss for _, uss in samples)
    return {
        "rss_mib": round(rss / 1024, 1),
        "uss_mib": round(uss / 1024, 1),
        "rss_max_mib": round(max(rss for rss, _ in samples) / 1024, 1),
        "uss_max_mib": round(max(uss for _, uss in samples) / 1024, 1),
        "cpu_percent": round(100 * cpu / wall, 2),
        "frames_per_s": round(frames / wall, 2),
        # Threads by name (Python threads show the process name unless the code names them).
        "cpu_percent_by_thread": {name: p for name, p in sorted(per_thread.items()) if p > 0},
    }


async def _startup(mode: str, env: dict[str, str], log_dir: Path) -> tuple[Probe, dict[str, Any]]:
    """Launch STARTS times; keep the last process running. Start-up figures in seconds."""
    first, ready = [], []
    for n in range(STARTS):
        probe = Probe(mode, env, log_dir / f"{mode}-{n}.log")
        shown = await asyncio.to_thread(probe.expect, "first_frame")
        first.append(float(shown[1]) - probe.launched)
        _, screen, when = await asyncio.to_thread(probe.expect, "ready")
        ready.append(float(when) - probe.launched)
        if mode == "client":
            assert screen == "main", "the stored session was not resumed"
        if n < STARTS - 1:
            await asyncio.to_thread(probe.close)
    return probe, {
        "first_frame_s": round(statistics.median(first), 2),
        "first_screen_s": round(statistics.median(ready), 2),
        "first_screen_all_s": [round(r, 2) for r in ready],
    }


async def _reference(tmp_path: Path) -> dict[str, Any]:
    probe, info = await _startup("reference", dict(os.environ), tmp_path)
    try:
        await settled(probe)
        info["idle"] = await _window(probe)
    finally:
        await asyncio.to_thread(probe.close)
    return info


async def _client(url: str, pulse: PulseAudio, tmp_path: Path) -> dict[str, Any]:
    async with Client(url) as admin:
        await admin.register("admin", "admin password")
        community = await admin.create_channel("Community", type="category")
        general = await admin.create_channel("general", category_id=str(community.id))
        lounge = await admin.create_channel("Lounge", type="voice", category_id=str(community.id))
        for n in range(60):
            await admin.send(general.id, f"history message number {n} " + "lorem ipsum " * 4)
    async with Client(url) as bot:
        await bot.register("bot", "bot password")
    home = tmp_path / "client-home"
    await stored_login(url, home, "admin", "admin password")
    card = pulse.add_card("perf")
    settings = ClientSettings.load(home)
    settings.audio.input_device = card.input_device
    settings.audio.output_device = card.output_device
    settings.save()

    probe, info = await _startup("client", client_env(home), tmp_path)
    player = None
    try:
        await settled(probe)
        info["idle"] = await _window(probe)
        # In a call: the bot talks into the channel, the client's microphone hears a tone.
        seconds = WINDOW + 15
        bot_wav = _write_wav(tmp_path / "bot.wav", _speechlike(seconds))
        player = pulse.play(card.mic_sink, _speechlike(seconds))
        await asyncio.to_thread(probe.send, f"join {lounge.id}")
        await asyncio.to_thread(probe.expect, "joined", 30)
        async with Client(url) as bot:
            await bot.login("bot", "bot password")
            talking = asyncio.ensure_future(_play_wav_bot().play(bot, "Lounge", bot_wav))
            try:
                await asyncio.sleep(3.0)
                info["voice"] = await _window(probe)
            finally:
                talking.cancel()
                await asyncio.gather(talking, return_exceptions=True)
        await asyncio.to_thread(probe.send, "leave")
        await asyncio.to_thread(probe.expect, "left", 30)
    finally:
        if player is not None:
            player.stop()
        await asyncio.to_thread(probe.close)
    if PACKAGED.exists():
        info["package_idle"] = await _packaged_client(home, tmp_path)
    return info


PACKAGE_WINDOW_TIMEOUT = 120.0  # seconds for the packaged client to draw its window
PACKAGE_POLL = 0.1  # seconds between screenshots while waiting for it


def _screen_colours() -> int:
    """How many colours the display shows (a drawn window with text and panels: hundreds;
    an empty screen: one)."""
    from PIL import ImageGrab

    colours = ImageGrab.grab(xdisplay=os.environ["DISPLAY"]).getcolors(maxcolors=4096)
    return 4097 if colours is None else len(colours)


def _window_drawn() -> bool:
    """Whether the screen shows a drawn window."""
    return _screen_colours() > 50


def _screenshot(path: Path) -> None:
    from PIL import ImageGrab

    ImageGrab.grab(xdisplay=os.environ["DISPLAY"]).save(path)


def _process_report(pid: int, log_path: Path) -> str:
    """What a process is doing (state and threads from /proc) and the end of its log."""
    lines = []
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        lines += [line for line in status if line.startswith(("State:", "Threads:", "VmRSS:"))]
        for entry in os.scandir(f"/proc/{pid}/task"):
            try:
                stat = Path(entry.path, "stat").read_text()
                wchan = Path(entry.path, "wchan").read_text()
            except OSError:  # ended meanwhile
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            state = stat[stat.rindex(")") + 2]
            lines.append(f"  thread {entry.name} {name!r} state {state} waiting in {wchan}")
    except OSError:
        lines.append("(the process has ended)")
    log = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""
    return "\n".join(lines) + f"\n--- {log_path.name} ---\n{log}"


async def _packaged_client(home: Path, tmp_path: Path) -> dict[str, Any]:
    """The PyInstaller build resuming the same session: launch -> a drawn window (polling
    screenshots every PACKAGE_POLL s; no frame counter in the package), then idle memory and
    CPU."""
    deadline = time.monotonic() + 15
    while await asyncio.to_thread(_window_drawn):  # the probed client's window closing
        assert time.monotonic() < deadline, "another window is still on the display"
        await asyncio.sleep(0.2)
    log_path = tmp_path / "package.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(PACKAGED), env=client_env(home), stdout=log, stderr=subprocess.STDOUT
        )
    launched = time.monotonic()
    try:
        while True:
            colours = await asyncio.to_thread(_screen_colours)
            if colours > 50:
                break
            if process.returncode is not None:
                raise AssertionError(
                    f"the packaged client exited ({process.returncode}) before drawing its "
                    f"window:\n{_process_report(process.pid, log_path)}"
                )
            waited = time.monotonic() - launched
            if waited > PACKAGE_WINDOW_TIMEOUT:
                shot = tmp_path / "package-timeout.png"
                await asyncio.to_thread(_screenshot, shot)
                raise AssertionError(
                    f"the packaged client drew no window in {waited:.0f} s (the screen shows "
                    f"{colours} colours; {shot}):\n{_process_report(process.pid, log_path)}"
                )
            await asyncio.sleep(PACKAGE_POLL)
        drawn = time.monotonic() - launched
        probe = _Attached(process.pid)
        await asyncio.sleep(5.0)  # the same settling time the probed client needed, at most
        try:
            cpu, wall = probe.cpu_seconds(), time.monotonic()
            samples = []
            for _ in range(int(WINDOW)):
                await asyncio.sleep(1.0)
                samples.append(probe.memory())
            cpu, wall = probe.cpu_seconds() - cpu, time.monotonic() - wall
        except FileNotFoundError:
            raise AssertionError(
                f"the packaged client exited ({process.returncode}) while measured:\n"
                + _process_report(process.pid, log_path)
            ) from None
        rss = statistics.median(rss for rss, _ in samples)
        uss = statistics.median(uss for _, uss in samples)
        return {
            "window_drawn_s": round(drawn, 2),
            "rss_mib": round(rss / 1024, 1),
            "uss_mib": round(uss / 1024, 1),
            "cpu_percent": round(100 * cpu / wall, 2),
        }
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


class _Attached(Probe):
    """Probe's /proc readings for a process it did not start."""

    def __init__(self, pid: int) -> None:
        self._pid = pid

    @property
    def pid(self) -> int:
        return self._pid


def _package() -> dict[str, Any]:
    folder = PACKAGED.parent
    archive = ROOT / "dist" / f"voicechat-client-linux-{os.uname().machine}.tar.gz"
    if not PACKAGED.exists() or not archive.exists():
        subprocess.run([str(ROOT / "scripts" / "package_client.sh")], check=True)  # noqa: S603
    size = sum(
        (Path(dirpath) / name).lstat().st_size
        for dirpath, _dirs, names in os.walk(folder)
        for name in names
        if not (Path(dirpath) / name).is_symlink()
    )
    with tarfile.open(archive) as tar:
        assert tar.getmember("voicechat-client/voicechat-client").isfile()
    return {
        "folder_mib": round(size / 2**20, 1),
        "archive_mib": round(archive.stat().st_size / 2**20, 1),
    }


def _ratios(info: dict[str, Any]) -> dict[str, Any]:
    reference = RESULTS.get("reference")
    if not reference:
        return {}
    ratios: dict[str, Any] = {}
    for key in ("first_frame_s", "first_screen_s"):
        ratios[key] = round(info[key] / reference[key], 2)
    for phase in ("idle", "voice"):
        if phase in info:
            for key in ("rss_mib", "uss_mib"):
                ratios[f"{phase}_{key}"] = round(info[phase][key] / reference["idle"][key], 2)
    return {"ratio_to_reference": ratios}


# The package first: the client row also measures the packaged build resuming its session.
ROWS = ["reference", "package", "client"]


@pytest.mark.parametrize("row", ROWS)
def test_client_resources(
    benchmark: Any,
    row: str,
    x_display: str,  # noqa: F811
    pulse_audio: PulseAudio,  # noqa: F811
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> None:
    measure: Callable[[], dict[str, Any]]
    if row == "reference":
        measure = lambda: asyncio.run(_reference(tmp_path))  # noqa: E731
    elif row == "client":
        server = live_server_factory(
            {
                "VOICECHAT_DATABASE_URL": database_url,
                "VOICECHAT_VALKEY_URL": clean_valkey,
                "VOICECHAT_DATA_DIR": str(tmp_path / "live-data"),
            }
        )
        measure = lambda: asyncio.run(  # noqa: E731
            _client(server.base_url, pulse_audio, tmp_path)
        )
    else:
        measure = _package
    try:
        info = benchmark.pedantic(measure, rounds=1, iterations=1)
    finally:
        if row == "client":
            pulse_audio.remove_cards()
    RESULTS[row] = info
    if row == "client":
        info.update(_ratios(info))
    info["targets"] = TARGETS
    benchmark.extra_info.update(info)
    print(f"\n{row}: {info}")
