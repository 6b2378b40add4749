"""`voicechat serve` on every core: API worker processes sharing one listening socket.

The parent binds the port, starts the embedded PostgreSQL and Valkey, migrates the schema and
makes the development keys once, then spawns the workers (uvicorn's supervisor: each worker is
a fresh interpreter that builds the app from the pickled, resolved settings). Everything that
must be shared between workers already goes through PostgreSQL or Valkey: the gateway's event
fan-out, presence, socket caps, rate limits, sessions.

A voice call cannot be split across processes (the SFU forwards media between the
participants it holds), so with several workers the SFU leaves them: the parent also runs one
voice node process (the code of `voicechat voice`) and the workers drive it in remote voice
mode over Valkey, as separate API instances do. docs/architecture.md, Processes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from socket import socket

from fastapi import FastAPI
from uvicorn import Config
from uvicorn.supervisors.multiprocess import Multiprocess

from voicechat.settings import Settings

log = logging.getLogger("voicechat")

_PR_SET_PDEATHSIG = 1
#: Seconds the voice node has to leave its rooms and deregister before it is killed.
VOICE_NODE_STOP_SECONDS = 10.0
#: Seconds between attempts to restart a voice node that exited.
VOICE_NODE_RETRY = 5.0


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, so a container's cpuset counts)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def worker_count(settings: Settings) -> int:
    """`VOICECHAT_WORKERS`, with 0 meaning one worker per usable core."""
    return settings.workers or usable_cores()


def die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the parent exits, even by SIGKILL (Linux only)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent already died before we asked
        os._exit(1)


@dataclass(frozen=True, slots=True)
class WorkerApp:
    """The app factory a worker process calls: picklable, it carries the resolved settings."""

    settings: Settings

    def __call__(self) -> FastAPI:
        """Build this worker's app (logging and HTTP limits first, as the parent has them)."""
        from voicechat.api import create_app
        from voicechat.api.http_limits import uvicorn_options
        from voicechat.logs import configure_logging

        die_with_parent()
        configure_logging(self.settings.log_level, self.settings.log_format)
        uvicorn_options(self.settings)  # the limits live on the protocol class, per process
        return create_app(self.settings)


class WorkerSupervisor(Multiprocess):
    """uvicorn's supervisor, plus the voice node process when the SFU is ours to run.

    Workers that die are replaced (uvicorn's rule); so is the voice node. SIGINT and SIGTERM
    stop the workers (each shuts its app down), then the voice node (it leaves its rooms and
    deregisters).
    """

    def __init__(
        self,
        config: Config,
        sockets: list[socket],
        *,
        voice_node: Callable[[], BaseProcess] | None = None,
    ) -> None:
        super().__init__(config, sockets)
        self._start_voice_node = voice_node
        self.voice_node: BaseProcess | None = None
        self._voice_node_since = 0.0
        #: The signal that stopped us; None when the workers stopped by themselves (one could
        #: not start: the app, the database or the socket is broken).
        self.stopped_by: str | None = None

    def init_processes(self) -> None:
        """The voice node first, so the workers find it registered sooner."""
        if self._start_voice_node is not None:
            self.voice_node = self._start_voice_node()
            self._voice_node_since = time.monotonic()
        super().init_processes()

    def keep_subprocess_alive(self) -> None:
        """Replace a dead worker (uvicorn) or a dead voice node."""
        super().keep_subprocess_alive()
        node = self.voice_node
        if self.should_exit.is_set() or node is None or self._start_voice_node is None:
            return
        # One that cannot start (its UDP port taken, say) is retried every few seconds only.
        if not node.is_alive() and time.monotonic() - self._voice_node_since > VOICE_NODE_RETRY:
            log.warning("the voice node exited (status %s); starting another", node.exitcode)
            node.join()
            self.voice_node = self._start_voice_node()
            self._voice_node_since = time.monotonic()

    def handle_int(self) -> None:
        """Ctrl-C: stop everything."""
        self.stopped_by = "SIGINT"
        super().handle_int()

    def handle_term(self) -> None:
        """SIGTERM: stop everything."""
        self.stopped_by = "SIGTERM"
        super().handle_term()

    def join_all(self) -> None:
        """Wait for the workers (uvicorn told them to stop), then stop the voice node: a worker
        shutting down still tells the node its callers left."""
        super().join_all()
        node = self.voice_node
        if node is None:
            return
        if node.is_alive():
            node.terminate()
        node.join(VOICE_NODE_STOP_SECONDS)
        if node.is_alive():
            node.kill()
            node.join()


def spawn_voice_node(target: Callable[[Settings], None], settings: Settings) -> BaseProcess:
    """Start `target(settings)` (the voice node's main) in a fresh interpreter."""
    process = multiprocessing.get_context("spawn").Process(
        target=target, args=(settings,), name="voicechat-voice", daemon=False
    )
    process.start()
    return process
