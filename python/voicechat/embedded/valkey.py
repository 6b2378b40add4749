"""An embedded Valkey: ``valkey-server`` on 127.0.0.1 with its data in a directory we own."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
from pathlib import Path
from urllib.parse import quote

from voicechat.embedded._account import Account
from voicechat.embedded._errors import EmbeddedError
from voicechat.embedded._files import (
    LOOPBACK,
    ensure_owned_dir,
    load_or_create_secret,
    write_private,
    write_public,
)
from voicechat.embedded._process import spawn_server
from voicechat.embedded._runtime import Install, valkey_install
from voicechat.embedded._server import EmbeddedServer

_SERVER_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}


class EmbeddedValkey(EmbeddedServer):
    """A Valkey server whose data lives in ``root``, started and stopped by us.

    It listens on 127.0.0.1 only, in protected mode, with a random password kept in
    ``root/password`` (0600) and persistence by append-only file. As root it runs as the system
    user ``voicechat`` (created if missing), never as root.

    Files in ``root``: ``data/`` (AOF, RDB, pid file), ``valkey.conf`` (rewritten at each start,
    holds no secret: the password reaches the server through its standard input),
    ``log/valkey.log``, ``port``, ``lock``, ``password``.

    Not thread-safe: use one object from one thread at a time.
    """

    product = "Valkey"
    exe_name = "valkey-server"
    graceful_signal = signal.SIGTERM  # flushes the AOF (and saves) before exiting
    log_name = "valkey.log"

    def __init__(
        self, root: Path, *, port: int | None = None, runtime_dir: Path | None = None
    ) -> None:
        """Describes the server; nothing happens on disk until :meth:`start`.

        Args:
            root: Directory this server owns; created if missing. As root it must be reachable
                by the ``voicechat`` user (not under a home directory).
            port: TCP port on 127.0.0.1. None reuses the port of the previous start when it is
                free, else picks a free one.
            runtime_dir: Where to copy the binary when, as root, the ``voicechat`` user cannot
                reach the installed one. Default ``/var/lib/voicechat/runtime``.
        """
        super().__init__(root, port=port, runtime_dir=runtime_dir)
        self._password: str | None = None

    def start(self, timeout: float = 30.0) -> str:
        """Starts the server, or returns at once if it is running already.

        Args:
            timeout: Seconds for the whole start.

        Returns:
            ``redis://:<password>@127.0.0.1:<port>/0`` (holds the password: never log it).

        Raises:
            EmbeddedError: With a one-line reason, and the log tail where there is one.
        """
        return super().start(timeout)

    @property
    def url(self) -> str:
        """``redis://:<password>@127.0.0.1:<port>/0``.

        Raises:
            EmbeddedError: The server is not running.
        """
        return self._url()

    @property
    def dsn(self) -> str:
        """The same as :attr:`url`."""
        return self._url()

    def _url(self) -> str:
        if not self.is_running() or self._password is None or self._port is None:
            raise EmbeddedError(f"Valkey in {self.root} is not running")
        return f"redis://:{quote(self._password, safe='')}@{LOOPBACK}:{self._port}/0"

    def _locate(self) -> Install:
        return valkey_install()

    def _escalation(self) -> list[tuple[signal.Signals, float]]:
        return [(signal.SIGKILL, 5.0)]

    def _prepare(self, account: Account, install: Install, deadline: float) -> None:
        self._password = load_or_create_secret(self.root / "password")
        ensure_owned_dir(self._data_dir, account)
        # No server runs on this data now (strays were stopped): the pid file is stale.
        (self._data_dir / "valkey.pid").unlink(missing_ok=True)

    def _launch(
        self, account: Account, install: Install, port: int, log_fd: int
    ) -> subprocess.Popen[bytes]:
        assert self._password is not None
        config = self.root / "valkey.conf"
        text = _config(self._data_dir, port)
        if account.switch:
            write_public(config, text)  # root-owned: the server may read it, never change it
        else:
            write_private(config, text)
        # "-" after the file makes the server read more configuration from standard input.
        process = spawn_server(
            [str(install.bin / "valkey-server"), str(config), "-"],
            account=account,
            death_signal=self.graceful_signal,
            env=_SERVER_ENV,
            log_fd=log_fd,
            stdin=subprocess.PIPE,
        )
        assert process.stdin is not None
        # A broken pipe means it died at once; waiting for readiness reports why.
        with contextlib.suppress(BrokenPipeError):
            process.stdin.write(f"requirepass {_quote(self._password)}\n".encode())
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
        return process

    def _is_ready(self, process: subprocess.Popen[bytes], port: int) -> bool:
        assert self._password is not None
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1.0) as conn:
                conn.sendall(_command("AUTH", self._password) + _command("PING"))
                replies = _read_replies(conn, 2)
        except OSError:
            return False
        if len(replies) < 2:
            return False
        auth, ping = replies
        if auth != "+OK":
            # Our password is random: a refusal means another server answers on this port.
            raise self._failure(f"another server answers on 127.0.0.1:{port}: {auth[:60]}")
        return ping == "+PONG"  # "-LOADING ..." while it reads the AOF


def _config(data_dir: Path, port: int) -> str:
    lines = [
        "# Written by voicechat at each start; changes here are lost.",
        f"bind {LOOPBACK}",
        f"port {port}",
        "protected-mode yes",
        "daemonize no",
        "supervised no",
        f"dir {_quote(str(data_dir))}",
        f"pidfile {_quote(str(data_dir / 'valkey.pid'))}",
        'logfile ""',
        "always-show-logo no",
        "appendonly yes",
        "appendfsync everysec",
        # Clients cannot move files around or load code even if they get in.
        "enable-protected-configs no",
        "enable-debug-command no",
        "enable-module-command no",
    ]
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    """A double-quoted string as the Valkey configuration parser reads it."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _command(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        raw = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def _read_replies(conn: socket.socket, count: int) -> list[str]:
    """The first ``count`` simple-string or error replies (all AUTH and PING return)."""
    buffer = b""
    while buffer.count(b"\r\n") < count:
        chunk = conn.recv(4096)
        if not chunk:
            break
        buffer += chunk
    return [line.decode(errors="replace") for line in buffer.split(b"\r\n")[:count] if line]
