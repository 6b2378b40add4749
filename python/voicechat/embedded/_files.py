"""Directories, secrets, the ownership lock, the recorded port and logs in a server's root."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import socket
import stat
from pathlib import Path

from voicechat.embedded._account import Account
from voicechat.embedded._errors import EmbeddedError

_LOG_ROTATE_BYTES = 10 * 1024 * 1024
LOOPBACK = "127.0.0.1"


def ensure_dir(path: Path, mode: int) -> None:
    """Creates ``path`` and its missing parents with ``mode``.

    Directories that already exist are left exactly as they are: we only ever set the mode of
    directories we create, so no home directory (or anything else) is ever loosened.
    """
    missing: list[Path] = []
    current = path
    while not os.path.lexists(current):
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=mode)
        except FileExistsError:
            continue
        os.chmod(directory, mode)  # mkdir's mode passes through the umask


def ensure_owned_dir(path: Path, account: Account) -> None:
    """Makes ``path`` a 0700 directory of ``account``, creating it if needed."""
    if not path.exists():
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)
        if account.switch:
            os.chown(path, account.uid, account.gid)
        return
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise EmbeddedError(f"{path} is not a directory")
    if info.st_uid != account.uid:
        raise EmbeddedError(
            f"{path} belongs to uid {info.st_uid}, not to {account.name!r} who runs the server; "
            f"fix it with: chown -R {account.name}: {path}"
        )


def load_or_create_secret(path: Path) -> str:
    """The secret stored in ``path`` (mode 0600, ours), generated on first use."""
    try:
        info = path.stat()
    except FileNotFoundError:
        value = secrets.token_urlsafe(32)
        write_private(path, value + "\n")
        return value
    if info.st_uid != os.geteuid():
        raise EmbeddedError(f"secret file {path} belongs to uid {info.st_uid}, not to us")
    if info.st_mode & 0o077:
        os.chmod(path, 0o600)  # tightening our own file: it should never have been readable
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise EmbeddedError(f"secret file {path} is empty; remove it to have a new one generated")
    return value


def write_private(path: Path, text: str, *, owner: Account | None = None) -> None:
    """Writes ``text`` to ``path`` atomically, readable only by its owner (us, or ``owner``)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        if owner is not None and owner.switch:
            os.fchown(fd, owner.uid, owner.gid)
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)


def write_public(path: Path, text: str) -> None:
    """Writes a non-secret file atomically, readable by everyone (e.g. the server's user)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


class RootLock:
    """An exclusive lock on a server root, held from start to stop.

    Only one live process manages a root at a time. The kernel drops the lock when its holder
    dies, however it dies, so a free lock together with a running server means an orphan.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def acquire(cls, path: Path, product: str) -> RootLock:
        """Takes the lock in ``path`` or raises EmbeddedError naming the holder."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise EmbeddedError(
                f"{product} in {path.parent} is already managed by another process "
                f"(pid {holder}); stop that one first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd)

    def release(self) -> None:
        """Drops the lock; calling it again does nothing."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` now.

    Both servers set SO_REUSEADDR, so we do too: otherwise connections of the previous run
    lingering in TIME_WAIT would make the recorded port look taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def any_free_port(avoid: set[int]) -> int:
    """A port on 127.0.0.1 that is free now and not in ``avoid``."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((LOOPBACK, 0))
            port: int = probe.getsockname()[1]
        if port not in avoid:
            return port
    raise EmbeddedError("could not find a free TCP port on 127.0.0.1")


def recorded_port(path: Path) -> int | None:
    """The port recorded by the previous run, if any."""
    with contextlib.suppress(OSError, ValueError):
        port = int(path.read_text(encoding="utf-8").strip())
        if 0 < port < 65536:
            return port
    return None


def open_log(path: Path) -> int:
    """Opens a server log for appending, moving it to ``<name>.1`` first once it is large.

    Returns:
        A file descriptor to hand to the server as stdout and stderr; close it after spawning.
    """
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > _LOG_ROTATE_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)


def log_size(path: Path) -> int:
    """The size of a log now, so a tail can show only what was written after."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def log_tail(path: Path, since: int = 0, lines: int = 25) -> str:
    """The last ``lines`` lines written to ``path`` from byte offset ``since``."""
    try:
        with path.open("rb") as log:
            log.seek(max(since, log.seek(0, os.SEEK_END) - 64 * 1024))
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])
