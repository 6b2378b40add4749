"""The desktop client (or a bare Kivy app) in a process of its own, with a frame counter.

Run as ``python -m tests.gui.probe client`` (the real client: `kivy_client.main`'s Kivy set-up
and `VoicechatApp`, resuming the session stored in `VOICECHAT_CLIENT_HOME`) or ``... reference``
(a bare Kivy app showing one label, with the same Kivy set-up): the idle-redraw test and the
resource benchmark (benches/test_client_resources.py) drive it through :class:`Probe`.

Kivy redraws the window only when something on its canvas changed, and then dispatches the
window's `on_flip`; the probe counts those. It prints, one per line on stdout:

- ``first_frame <t>``: the first flip (`t` is `time.monotonic()`, which is system-wide);
- ``ready <screen> <t>``: the first flip after the first screen (login or main) is showing;
- answers to commands read from stdin: ``frames`` -> ``frames <count>``; ``join <channel id>``
  -> ``joined`` once the voice call is connected (``error <sentence>`` if it failed);
  ``leave`` -> ``left``; ``threads`` -> ``threads <tid>:<name>,...`` (Python's threads);
  ``ticks`` -> ``ticks <count> <t>`` (how often Kivy's loop has woken up: `Clock.frames`, drawn
  or not); ``key`` presses and releases Shift (input that changes nothing) -> ``pressed``;
  ``quit`` closes the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

ROOT = Path(__file__).resolve().parents[2]


# -- inside the probed process ---------------------------------------------------------------


class _Frames:
    """Counts the window's flips and reports the first one."""

    def __init__(self) -> None:
        self.count = 0
        self.waiting: list[asyncio.Future[float]] = []

    def flipped(self, *_args: Any) -> None:
        now = time.monotonic()
        self.count += 1
        if self.count == 1:
            _say(f"first_frame {now:.6f}")
        waiting, self.waiting = self.waiting, []
        for future in waiting:
            if not future.done():
                future.set_result(now)

    def next_flip(self) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        return future


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _serve(app: Any, frames: _Frames, mode: str) -> None:
    """Report readiness, then answer commands from stdin until told to quit."""
    from kivy.core.window import Window

    if mode == "client":
        await app.ready.wait()
    # Something must change for a flip to come: ask for one redraw after the screen is up.
    flip = frames.next_flip()
    Window.canvas.ask_update()
    when = await flip
    screen = app.manager.current if mode == "client" else "label"
    _say(f"ready {screen} {when:.6f}")

    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, "quit")

    threading.Thread(target=read_stdin, name="probe-stdin", daemon=True).start()
    while True:
        command, _, argument = (await commands.get()).partition(" ")
        if command == "frames":
            _say(f"frames {frames.count}")
        elif command == "ticks":
            from kivy.clock import Clock

            _say(f"ticks {Clock.frames} {time.monotonic():.6f}")
        elif command == "key":
            Window.dispatch("on_key_down", 304, 225, None, [])  # Shift
            Window.dispatch("on_key_up", 304, 225)
            _say("pressed")
        elif command == "threads":
            # Python's threads by OS thread id (the OS only knows them as the process's name).
            names = ",".join(
                f"{t.native_id}:" + t.name.replace(" ", "_").replace(",", ";")
                for t in threading.enumerate()
            )
            _say(f"threads {names}")
        elif command == "join":
            session = app.session
            connected = asyncio.Event()

            def check(_change: Any = None, session: Any = session, done: Any = connected) -> None:
                if session.voice is not None and session.voice.connected:
                    done.set()

            unsubscribe = session.subscribe(check)
            try:
                if await session.join_voice(UUID(argument)):
                    check()
                    await connected.wait()
                    _say("joined")
                else:
                    _say(f"error {session.error}")
            finally:
                unsubscribe()
        elif command == "leave":
            await app.session.leave_voice()
            _say("left")
        elif command == "quit":
            app.stop()
            return


def _reference_app() -> Any:
    from kivy.app import App
    from kivy.uix.label import Label

    class LabelApp(App):  # type: ignore[misc]
        def build(self) -> Label:
            return Label(text="voicechat reference: one label")

    return LabelApp()


async def _run(mode: str) -> None:
    from kivy.core.window import Window

    frames = _Frames()
    Window.bind(on_flip=frames.flipped)
    if mode == "client":
        from kivy_client.app import VoicechatApp

        app = VoicechatApp()
        running = asyncio.ensure_future(app.run_async())
    else:
        app = _reference_app()
        running = asyncio.ensure_future(app.async_run(async_lib="asyncio"))
    serving = asyncio.ensure_future(_serve(app, frames, mode))
    await running
    serving.cancel()


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "client"
    if mode not in ("client", "reference"):
        raise SystemExit("usage: python -m tests.gui.probe client|reference")
    from kivy_client.main import configure_kivy

    configure_kivy()
    asyncio.run(_run(mode))


# -- in the test or benchmark process --------------------------------------------------------


class Probe:
    """A probed client process: its output lines, commands, memory and CPU time.

    Args:
        mode: "client" or "reference".
        env: the process's environment (DISPLAY, VOICECHAT_CLIENT_HOME, ...).
        log_path: where its stderr goes.
    """

    def __init__(self, mode: str, env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.launched = time.monotonic()
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.gui.probe", mode],
                cwd=ROOT,
                env=dict(env),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                bufsize=1,
            )
        self._reader = threading.Thread(target=self._read, name="probe-reader", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def expect(self, prefix: str, timeout: float = 60.0) -> list[str]:
        """The words of the next output line starting with `prefix` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} from the client within {timeout} s") from None
            if line is None:
                raise AssertionError(
                    f"the client exited ({self.process.wait()}) before {prefix!r}:\n"
                    + self.log_path.read_text(errors="replace")[-4000:]
                )
            if line.startswith(prefix):
                return line.split()

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def frames(self) -> int:
        """How many frames the window has drawn so far."""
        self.send("frames")
        return int(self.expect("frames")[1])

    def ticks(self) -> tuple[int, float]:
        """(How many times Kivy's loop has woken up so far, when: `time.monotonic()`)."""
        self.send("ticks")
        _, count, when = self.expect("ticks")
        return int(count), float(when)

    def memory(self) -> tuple[int, int]:
        """(RSS, USS) in KiB: resident, and resident only in this process (private pages)."""
        fields: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, _, value = line.partition(":")
            fields[name] = int(value.split()[0])
        return fields["Rss"], fields["Private_Clean"] + fields["Private_Dirty"]

    def cpu_seconds(self) -> float:
        """User plus system CPU time of all the process's threads so far."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def thread_cpu_seconds(self) -> dict[str, tuple[str, float]]:
        """(name, CPU seconds so far) per thread id: Python's thread names where it has them,
        else the OS's (see :meth:`thread_times`)."""
        self.send("threads")
        python_names = dict(
            item.split(":", 1) for item in self.expect("threads")[1].split(",") if item
        )
        return {
            tid: (python_names.get(tid) or name, seconds)
            for tid, (name, seconds) in self.thread_times().items()
        }

    def thread_times(self) -> dict[str, tuple[str, float]]:
        """(OS name, CPU seconds so far) per thread id, of the threads alive now.

        Threads come and go while this reads `/proc`: one listed but gone by the time its
        `stat` is read (or half-read) is left out, as if it had ended before the listing.
        """
        times: dict[str, tuple[str, float]] = {}
        try:
            tids = [entry.name for entry in os.scandir(f"/proc/{self.pid}/task")]
        except FileNotFoundError:  # the process itself has ended
            return times
        for tid in tids:
            try:
                stat = Path(f"/proc/{self.pid}/task/{tid}/stat").read_text()
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2 :].split()
                seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, ValueError, IndexError):  # ended meanwhile (ESRCH, ENOENT)
                continue
            times[tid] = (name, seconds)
        return times

    def close(self) -> int:
        """Ask the window to close (killing the process if it does not); its exit status."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.send("quit")
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        status = self.process.wait(15)
        self._reader.join(5)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        return status


if __name__ == "__main__":
    main()
