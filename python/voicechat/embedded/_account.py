"""Who the server processes run as, and how a forked child becomes that user.

PostgreSQL refuses to run as root, and a database or cache server has no use for root anyway.
So when we are root, every server process (and initdb) runs as the unprivileged system user
``voicechat``; otherwise they run as whoever we are.
"""

from __future__ import annotations

import ctypes
import grp
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from voicechat.embedded._errors import EmbeddedError

SERVICE_USER = "voicechat"

_PR_SET_PDEATHSIG = 1
_ACCESS_MODES = {"r": os.R_OK, "w": os.W_OK, "x": os.X_OK}
# Prints the first path the user cannot access as asked; each argument is "<r|w|x>:<path>".
_PROBE_SCRIPT = (
    'for spec do test "-${spec%%:*}" "${spec#*:}" || { printf "%s" "${spec#*:}"; exit 3; }; done'
)


def _load_prctl() -> Callable[..., int] | None:
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


# Resolved here, once: a child between fork and exec must not load libraries.
_prctl = _load_prctl()


@dataclass(frozen=True)
class Account:
    """The user the server processes run as.

    Attributes:
        name: User name.
        uid: User id.
        gid: Primary group id.
        switch: True when we are root and children must drop to this user.
    """

    name: str
    uid: int
    gid: int
    switch: bool


def server_account() -> Account:
    """The account servers run as: ourselves, or as root the ``voicechat`` system user."""
    euid = os.geteuid()
    if euid != 0:
        try:
            name = pwd.getpwuid(euid).pw_name
        except KeyError:  # a uid without a passwd entry, as in some containers
            name = str(euid)
        return Account(name=name, uid=euid, gid=os.getegid(), switch=False)
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        _create_service_user()
        entry = pwd.getpwnam(SERVICE_USER)
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise EmbeddedError(
            f"the system user {SERVICE_USER!r} has uid or gid 0; it must be an unprivileged user"
        )
    return Account(name=SERVICE_USER, uid=entry.pw_uid, gid=entry.pw_gid, switch=True)


def _create_service_user() -> None:
    useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
    if useradd is None:
        raise EmbeddedError(
            f"running as root needs the system user {SERVICE_USER!r} and useradd is missing; "
            f"create that user, or run voicechat as an ordinary user"
        )
    try:
        grp.getgrnam(SERVICE_USER)
        group_args = ["--gid", SERVICE_USER]
    except KeyError:
        group_args = ["--user-group"]
    nologin = next(
        (p for p in ("/usr/sbin/nologin", "/sbin/nologin") if Path(p).exists()), "/bin/false"
    )
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [
            useradd,
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            nologin,
            *group_args,
            SERVICE_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        try:
            pwd.getpwnam(SERVICE_USER)  # another process created it at the same moment
        except KeyError:
            reason = (result.stderr.strip().splitlines() or ["no message"])[-1]
            raise EmbeddedError(
                f"could not create the system user {SERVICE_USER!r}: {reason}"
            ) from None


def child_setup(account: Account | None, death_signal: signal.Signals | None) -> Callable[[], None]:
    """A ``preexec_fn`` that becomes ``account`` and asks for ``death_signal`` if we die.

    Args:
        account: The user to become; None (or an account that needs no switch) keeps ours.
        death_signal: Sent to the child by the kernel when the thread that forked it exits,
            so servers stop even if we are killed with SIGKILL. None for no signal.

    Returns:
        A function to pass as ``preexec_fn``.
    """
    parent = os.getpid()
    switch = account is not None and account.switch
    uid = account.uid if account is not None else -1
    gid = account.gid if account is not None else -1
    signum = int(death_signal) if death_signal is not None else 0
    prctl = _prctl

    def setup() -> None:
        # Runs between fork and exec: plain system calls only, nothing that imports or locks.
        if switch:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        # Credential changes clear the parent-death signal, so it is set after them.
        if signum and prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
            if os.getppid() != parent:  # we died before prctl: nobody will send the signal
                os._exit(1)

    return setup


def first_unreachable(account: Account, checks: Iterable[tuple[str, Path]]) -> Path | None:
    """The first path ``account`` cannot access as asked, tested as that user.

    Testing as the user (rather than reading mode bits) also covers ACLs, parent directories,
    and mounts with their own rules.

    Args:
        account: The user to test as.
        checks: Pairs of mode ("r", "w" or "x"; "x" on a directory means traverse) and path.

    Returns:
        The first failing path, or None when all pass.
    """
    pairs = list(checks)
    if not account.switch:
        for mode, path in pairs:
            if not os.access(path, _ACCESS_MODES[mode]):
                return path
        return None
    result = subprocess.run(  # noqa: S603 - fixed script, paths passed as arguments
        ["/bin/sh", "-c", _PROBE_SCRIPT, "sh", *(f"{mode}:{path}" for mode, path in pairs)],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        preexec_fn=child_setup(account, None),
    )
    if result.returncode == 0:
        return None
    if result.returncode == 3:
        return Path(result.stdout)
    raise EmbeddedError(
        f"could not test file access as user {account.name!r}: {result.stderr.strip()}"
    )
