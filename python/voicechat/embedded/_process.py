"""Starting, finding and stopping server processes."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from pathlib import Path
from typing import IO, Any

from voicechat.embedded._account import Account, child_setup
from voicechat.embedded._errors import EmbeddedError

_POLL_INTERVAL = 0.05


class _Spawner:
    """Forks long-lived children from one daemon thread that lives as long as the process.

    Linux sends the parent-death signal when the *thread* that forked a child exits, not when
    the process does. Servers started from a worker thread (``asyncio.to_thread``, an executor)
    would be stopped the moment that thread is retired; this thread is never retired.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], subprocess.Popen[bytes]], Future[subprocess.Popen[bytes]]]
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def spawn(self, make: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="voicechat-embedded-spawner", daemon=True
                )
                self._thread.start()
        future: Future[subprocess.Popen[bytes]] = Future()
        self._jobs.put((make, future))
        try:
            wait([future])
        except BaseException:
            # Interrupted (Ctrl-C) while the child was being forked: don't leave it behind.
            future.add_done_callback(_kill_spawned)
            raise
        return future.result()

    def _serve(self) -> None:
        while True:
            make, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(make())
            except Exception as exc:
                future.set_exception(exc)


def _kill_spawned(future: Future[subprocess.Popen[bytes]]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    process = future.result()
    process.kill()
    process.wait()


_spawner = _Spawner()


def spawn_server(
    argv: Sequence[str],
    *,
    account: Account,
    death_signal: signal.Signals,
    env: Mapping[str, str],
    log_fd: int,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Starts a long-lived server as our child, in its own session, logging to ``log_fd``.

    Its own session keeps a terminal's Ctrl-C away from it, so we stop the servers ourselves, in
    order, after the API; ``death_signal`` still stops it if we die without doing so.
    """

    def make() -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 - argv built from fixed parts and our paths
            list(argv),
            stdin=stdin,
            stdout=log_fd,
            stderr=log_fd,
            env=dict(env),
            cwd="/",
            umask=0o077,
            start_new_session=True,
            preexec_fn=child_setup(account, death_signal),
        )

    return _spawner.spawn(make)


def run_tool(
    argv: Sequence[str],
    *,
    account: Account | None,
    env: Mapping[str, str],
    timeout: float,
    stdin_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs a short-lived program (initdb, psql) to completion and captures its output.

    Args:
        argv: Program and arguments. Never put a secret here: any user can read command lines.
        account: Run as this account; None runs as ourselves.
        env: The whole environment of the program.
        timeout: Seconds before it is killed and EmbeddedError raised.
        stdin_text: Text fed to its standard input (the place for secrets and SQL).

    Returns:
        The finished process, whatever its exit code.
    """
    try:
        return subprocess.run(  # noqa: S603 - argv built from fixed parts and our paths
            list(argv),
            input=stdin_text,
            capture_output=True,
            text=True,
            check=False,
            env=dict(env),
            cwd="/",
            umask=0o077,
            timeout=max(timeout, 0.1),
            start_new_session=True,
            preexec_fn=child_setup(account, signal.SIGTERM),
        )
    except subprocess.TimeoutExpired:
        raise EmbeddedError(f"{Path(argv[0]).name} did not finish within {timeout:.0f} s") from None


def stop_child(
    process: subprocess.Popen[bytes], steps: Sequence[tuple[signal.Signals, float]]
) -> bool:
    """Sends each signal in turn and waits its time for ``process`` to exit.

    A SIGKILL step goes to the whole process group, so a server's own children go with it.

    Returns:
        Whether the process has exited.
    """
    for signum, seconds in steps:
        if process.poll() is not None:
            return True
        try:
            if signum == signal.SIGKILL:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)
        except ProcessLookupError:
            pass
        try:
            process.wait(seconds)
            return True
        except subprocess.TimeoutExpired:
            continue
    return process.poll() is not None


def _status(pid: int) -> tuple[str, int, int]:
    """(state letter, parent pid, real uid) of a process, from /proc."""
    state, ppid, uid = "", 0, -1
    with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key == "State":
                state = value.split()[0]
            elif key == "PPid":
                ppid = int(value)
            elif key == "Uid":
                uid = int(value.split()[0])
    return state, ppid, uid


def server_processes(data_dir: Path, exe_name: str, uid: int) -> dict[int, int]:
    """Live processes of the server program ``exe_name`` run by ``uid`` that serve ``data_dir``.

    Both servers make their data directory their working directory, so it tells which data a
    process serves even though both rewrite their process titles. Zombies are left out: they
    hold nothing, and where PID 1 does not reap (some containers) they never go away.

    Returns:
        A mapping of pid to parent pid.
    """
    target = os.path.realpath(data_dir)
    found: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.readlink(f"/proc/{pid}/cwd") != target:
                continue
            exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
            if exe.removesuffix(" (deleted)") != exe_name:
                continue
            state, ppid, owner = _status(pid)
        except (OSError, ValueError):  # gone, or not ours to inspect
            continue
        if owner == uid and state not in ("Z", "X"):
            found[pid] = ppid
    return found


def stop_strays(
    data_dir: Path, exe_name: str, uid: int, first_signal: signal.Signals, timeout: float
) -> list[int]:
    """Stops server processes on ``data_dir`` that no live manager of ours owns.

    They are left by a run that died without stopping them, so we cannot wait() for them:
    we signal their leader, poll until they are gone, and kill what remains.

    Returns:
        The pids that were found.
    """
    found = server_processes(data_dir, exe_name, uid)
    if not found:
        return []
    leaders = [pid for pid, ppid in found.items() if ppid not in found]
    for pid in leaders:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, first_signal)
    deadline = time.monotonic() + timeout
    while server_processes(data_dir, exe_name, uid) and time.monotonic() < deadline:
        time.sleep(_POLL_INTERVAL)
    left = server_processes(data_dir, exe_name, uid)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while left and time.monotonic() < deadline:
        time.sleep(_POLL_INTERVAL)
        left = server_processes(data_dir, exe_name, uid)
    if left:
        pids = ", ".join(map(str, sorted(left)))
        raise EmbeddedError(f"could not stop the old {exe_name} processes {pids} on {data_dir}")
    return sorted(found)
