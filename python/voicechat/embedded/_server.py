"""What starting and stopping an embedded server has in common, whichever server it is.

A server owns one root directory::

    root/            ours; 0711 as root (the service user only traverses it), else 0700
      data/          the server's data, owned by the user that runs the server, 0700
      log/           server logs, written through a descriptor we hand over
      lock           flock held by the process that manages the server
      port           the port of the last successful start, reused when free
      ...            secrets (0600, ours) and server specific files
"""

from __future__ import annotations

import abc
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from voicechat.embedded._account import Account, first_unreachable, server_account
from voicechat.embedded._errors import EmbeddedError
from voicechat.embedded._files import (
    RootLock,
    any_free_port,
    ensure_dir,
    log_size,
    log_tail,
    open_log,
    port_is_free,
    recorded_port,
    write_public,
)
from voicechat.embedded._process import stop_child, stop_strays
from voicechat.embedded._runtime import DEFAULT_RUNTIME_DIR, Install, reachable_install

logger = logging.getLogger("voicechat.embedded")

_POLL_INTERVAL = 0.05
_PORT_ATTEMPTS = 3
_KILL_WAIT = 5.0
_STRAY_WAIT = 30.0


class PortTakenError(Exception):
    """The server could not listen because something else took its port meanwhile."""


class EmbeddedServer(abc.ABC):
    """A server process we start as our child on 127.0.0.1 and stop again."""

    product: ClassVar[str]
    """Name for messages, e.g. "PostgreSQL"."""
    exe_name: ClassVar[str]
    """File name of the server executable."""
    graceful_signal: ClassVar[signal.Signals]
    """Asks the server to shut down promptly and cleanly; also its parent-death signal."""
    log_name: ClassVar[str]
    """File name of the server log in ``root/log``."""

    def __init__(self, root: Path, *, port: int | None, runtime_dir: Path | None) -> None:
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port must be between 1 and 65535, not {port}")
        self._root = Path(os.path.abspath(root))
        self._requested_port = port
        self._runtime_dir = runtime_dir if runtime_dir is not None else DEFAULT_RUNTIME_DIR
        self._port: int | None = port
        self._process: subprocess.Popen[bytes] | None = None
        self._lock: RootLock | None = None
        self._account: Account | None = None
        self._install: Install | None = None

    def __repr__(self) -> str:
        state = f"pid {self.pid}, port {self._port}" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {self._root} ({state})>"

    # -- public surface shared by both servers ------------------------------------------------

    @property
    def root(self) -> Path:
        """The directory this server owns (absolute)."""
        return self._root

    @property
    def port(self) -> int | None:
        """The TCP port on 127.0.0.1: the requested one, or the one chosen at start."""
        return self._port

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None."""
        return self._process.pid if self.is_running() and self._process is not None else None

    @property
    def log_path(self) -> Path:
        """The server log."""
        return self._root / "log" / self.log_name

    def is_running(self) -> bool:
        """Whether the server we started is still running."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60.0) -> str:
        """Starts the server, or returns at once if it is running already.

        Args:
            timeout: Seconds for the whole start, first-time setup included.

        Returns:
            The URL clients connect with (it carries the password: never log it).

        Raises:
            EmbeddedError: With a one-line reason, and the log tail where there is one.
        """
        if self.is_running():
            return self._url()
        self._forget_exited()
        deadline = time.monotonic() + timeout
        try:
            return self._start(deadline, timeout)
        except OSError as exc:
            raise EmbeddedError(f"{self.product} could not start: {exc}") from exc

    def stop(self, timeout: float = 30.0) -> None:
        """Stops the server and waits until none of its processes is left.

        Asks for a clean shutdown first and escalates to harder signals if the server does not
        finish within ``timeout``. Calling it when nothing runs does nothing.

        Raises:
            EmbeddedError: A process could not be stopped even with SIGKILL.
        """
        process = self._process
        if process is not None:
            steps = [(self.graceful_signal, timeout), *self._escalation()]
            if not stop_child(process, steps):
                raise EmbeddedError(f"{self.product} (pid {process.pid}) did not stop")
            self._process = None
            logger.info("%s stopped (data in %s)", self.product, self._data_dir)
        if self._account is not None:
            # Children outlive a postmaster that was killed; they must not hold the data.
            stop_strays(
                self._data_dir, self.exe_name, self._account.uid, signal.SIGKILL, _KILL_WAIT
            )
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what each server provides -------------------------------------------------------------

    @abc.abstractmethod
    def _locate(self) -> Install:
        """The installed binaries."""

    @abc.abstractmethod
    def _escalation(self) -> list[tuple[signal.Signals, float]]:
        """Signals after the graceful one, with seconds to wait after each."""

    @abc.abstractmethod
    def _prepare(self, account: Account, install: Install, deadline: float) -> None:
        """Creates data and secrets on first start, and cleans up after a crash."""

    @abc.abstractmethod
    def _launch(
        self, account: Account, install: Install, port: int, log_fd: int
    ) -> subprocess.Popen[bytes]:
        """Starts the server process listening on ``port``."""

    @abc.abstractmethod
    def _is_ready(self, process: subprocess.Popen[bytes], port: int) -> bool:
        """Whether the server accepts clients now."""

    def _after_ready(  # noqa: B027 - optional hook
        self, account: Account, install: Install, deadline: float
    ) -> None:
        """Work once the server accepts clients (roles, databases)."""

    @abc.abstractmethod
    def _url(self) -> str:
        """The client URL of the running server."""

    # -- the common sequence -------------------------------------------------------------------

    @property
    def _data_dir(self) -> Path:
        return self._root / "data"

    def _start(self, deadline: float, timeout: float) -> str:
        account = server_account()
        self._prepare_root(account)
        lock = RootLock.acquire(self._root / "lock", self.product)
        try:
            self._account = account
            strays = stop_strays(
                self._data_dir,
                self.exe_name,
                account.uid,
                self.graceful_signal,
                # an orphan gets a fair chance to shut down cleanly, the start keeps the rest
                min(_STRAY_WAIT, max((deadline - time.monotonic()) / 2, _KILL_WAIT)),
            )
            if strays:
                logger.warning(
                    "stopped %s processes %s left on %s by an earlier run",
                    self.product,
                    strays,
                    self._data_dir,
                )
            install = reachable_install(self._locate(), account, self._runtime_dir)
            self._install = install
            self._prepare(account, install, deadline)
            port = self._run_until_ready(account, install, deadline, timeout)
            self._after_ready(account, install, deadline)
            write_public(self._root / "port", f"{port}\n")
        except BaseException:
            self._kill()
            lock.release()
            raise
        self._lock = lock
        logger.info(
            "%s ready on %s:%d (data in %s)", self.product, "127.0.0.1", port, self._data_dir
        )
        return self._url()

    def _prepare_root(self, account: Account) -> None:
        ensure_dir(self._root, 0o711 if account.switch else 0o700)
        if account.switch:
            path = [*reversed(self._root.parents), self._root]
            blocked = first_unreachable(account, [("x", directory) for directory in path])
            if blocked is not None:
                raise EmbeddedError(
                    f"{self.product} data in {self._root} is out of reach of the user "
                    f"{account.name!r} that runs the server as root: {blocked} does not let it "
                    f"through (we never loosen it); as root, use a data dir outside home "
                    f"directories, e.g. VOICECHAT_DATA_DIR=/var/lib/voicechat"
                )
        ensure_dir(self._root / "log", 0o700)

    def _run_until_ready(
        self, account: Account, install: Install, deadline: float, timeout: float
    ) -> int:
        tried: set[int] = set()
        for _ in range(_PORT_ATTEMPTS):
            port = self._choose_port(tried)
            tried.add(port)
            since = log_size(self.log_path)
            log_fd = open_log(self.log_path)
            try:
                self._process = self._launch(account, install, port, log_fd)
            finally:
                os.close(log_fd)  # the server has its own copy
            self._port = port
            try:
                self._wait_ready(self._process, port, deadline, timeout, since)
            except PortTakenError:
                self._kill()
                continue
            return port
        raise EmbeddedError(
            f"{self.product} could not listen on 127.0.0.1: ports {sorted(tried)} were taken"
        )

    def _choose_port(self, tried: set[int]) -> int:
        if self._requested_port is not None:
            if tried or not port_is_free(self._requested_port):
                raise EmbeddedError(
                    f"{self.product} cannot listen on 127.0.0.1:{self._requested_port}: "
                    f"the port is in use"
                )
            return self._requested_port
        previous = recorded_port(self._root / "port")
        if previous is not None and previous not in tried and port_is_free(previous):
            return previous  # a stable port keeps the DSN stable across restarts
        return any_free_port(tried)

    def _wait_ready(
        self,
        process: subprocess.Popen[bytes],
        port: int,
        deadline: float,
        timeout: float,
        since: int,
    ) -> None:
        while True:
            code = process.poll()
            if code is not None:
                tail = log_tail(self.log_path, since)
                if "Address already in use" in tail and self._requested_port is None:
                    raise PortTakenError(port)
                raise self._failure(f"{self.product} exited during start-up (code {code})", since)
            if self._is_ready(process, port):
                return
            if time.monotonic() > deadline:
                raise self._failure(f"{self.product} was not ready within {timeout:.0f} s", since)
            time.sleep(_POLL_INTERVAL)

    def _failure(self, message: str, since: int = 0) -> EmbeddedError:
        return EmbeddedError(
            message, log_path=self.log_path, log_tail=log_tail(self.log_path, since)
        )

    def _kill(self) -> None:
        """Stops a server whose start failed; its data needs no care beyond what it does itself."""
        process = self._process
        if process is None:
            return
        stop_child(process, [(self.graceful_signal, 5.0), *self._escalation()])
        self._process = None

    def _forget_exited(self) -> None:
        """Drops a server that exited on its own (crashed, or killed by someone else)."""
        if self._process is not None:
            self._process.wait()
            self._process = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
