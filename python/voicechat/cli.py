"""The `voicechat` command: `serve`, `voice`, `migrate`, `version`, and room for more.

Every subcommand that needs configuration goes through :func:`_load` so that a wrong value
ends the process with one line naming the variable and exit status 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

import click
from pydantic import SecretStr

from voicechat import __version__
from voicechat.admin.cli import admin
from voicechat.logs import configure_logging
from voicechat.settings import Settings, SettingsError, load_settings

log = logging.getLogger("voicechat")

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CONFIG = 2


class ShutdownRequested(BaseException):
    """SIGINT or SIGTERM arrived; unwinds to the code that stops what we started."""


def _fail(message: str, status: int = 1) -> NoReturn:
    click.echo(f"voicechat: {message}", err=True)
    sys.exit(status)


def _load(**flags: Any) -> Settings:
    try:
        return load_settings(**flags)
    except SettingsError as exc:
        _fail(f"invalid configuration: {exc}", EXIT_CONFIG)


def _core_options(func: F) -> F:
    """The core settings of SPEC §2 as flags; each overrides its `VOICECHAT_*` variable."""
    options = [
        click.option("--host", help="Address to bind [VOICECHAT_HOST, 127.0.0.1]."),
        click.option("--port", help="HTTP port [VOICECHAT_PORT, 8080]."),
        click.option("--data-dir", help="Local state [VOICECHAT_DATA_DIR]."),
        click.option("--env", help="development|production [VOICECHAT_ENV]."),
        click.option("--database-url", help="PostgreSQL DSN; unset: embedded."),
        click.option("--valkey-url", help="Valkey URL; unset: embedded."),
        click.option("--storage-url", help="file:///path or s3://bucket; unset: data dir."),
        click.option("--media-port", help="SFU UDP port [VOICECHAT_MEDIA_PORT, 10000]."),
        click.option("--public-ip", help="Address in ICE candidates [VOICECHAT_PUBLIC_IP]."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _voice_options(func: F) -> F:
    """The settings a voice node uses, as flags; each overrides its `VOICECHAT_*` variable."""
    options = [
        click.option("--valkey-url", help="Valkey URL shared with the API [VOICECHAT_VALKEY_URL]."),
        click.option("--media-port", help="SFU UDP port [VOICECHAT_MEDIA_PORT, 10000]."),
        click.option(
            "--media-bind-ip", help="Address the UDP socket binds [VOICECHAT_MEDIA_BIND_IP]."
        ),
        click.option("--public-ip", help="Address in ICE candidates [VOICECHAT_PUBLIC_IP]."),
        click.option(
            "--media-workers",
            help="Media threads, on ports media-port + i [VOICECHAT_MEDIA_WORKERS, 1].",
        ),
        click.option(
            "--voice-node-capacity",
            help="Participants this node takes [VOICECHAT_VOICE_NODE_CAPACITY, 500].",
        ),
    ]
    func = click.option(
        "--voice-alive-file",
        help="File touched after each heartbeat [VOICECHAT_VOICE_ALIVE_FILE].",
    )(func)
    for option in reversed(options):
        func = option(func)
    return func


def _prepare_data_dir(settings: Settings) -> None:
    data_dir = settings.data_dir
    if not data_dir.exists():
        # As root the embedded PostgreSQL runs as an unprivileged user that must traverse
        # (not list) this directory to reach its own cluster.
        data_dir.mkdir(parents=True, mode=0o711 if os.geteuid() == 0 else 0o700)
    elif not os.access(data_dir, os.W_OK | os.X_OK):
        _fail(f"VOICECHAT_DATA_DIR: {data_dir} is not writable", EXIT_CONFIG)


@contextmanager
def _backing_services(settings: Settings, *, need_valkey: bool = True) -> Iterator[Settings]:
    """Start the embedded PostgreSQL and Valkey that the settings leave unconfigured.

    Yields the settings with both URLs resolved; on exit stops what it started, in reverse.
    """
    from voicechat.embedded import EmbeddedError, EmbeddedPostgres, EmbeddedValkey

    resolved: dict[str, Any] = {}
    with ExitStack() as stack:
        try:
            if settings.database_url is None:
                postgres = EmbeddedPostgres(settings.data_dir / "postgres")
                dsn = postgres.start()
                stack.callback(postgres.stop)
                resolved["database_url"] = SecretStr(dsn)
                _announce("postgres", f"embedded, 127.0.0.1:{postgres.port}", postgres.root)
            else:
                _announce("postgres", "external (VOICECHAT_DATABASE_URL)")
            if need_valkey and settings.valkey_url is None:
                valkey = EmbeddedValkey(settings.data_dir / "valkey")
                url = valkey.start()
                stack.callback(valkey.stop)
                resolved["valkey_url"] = SecretStr(url)
                _announce("valkey", f"embedded, 127.0.0.1:{valkey.port}", valkey.root)
            elif need_valkey:
                _announce("valkey", "external (VOICECHAT_VALKEY_URL)")
        except EmbeddedError as exc:
            where = f" (log: {exc.log_path})" if exc.log_path is not None else ""
            _fail(f"{exc.message}{where}")
        yield settings.model_copy(update=resolved)


def _announce(component: str, what: str, where: Path | None = None) -> None:
    suffix = f", data in {where}" if where is not None else ""
    click.echo(f"  {component:<9} {what}{suffix}")


@contextmanager
def _shutdown_on_signals() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into :class:`ShutdownRequested` so `finally` blocks stop children.

    uvicorn installs its own handlers while serving and re-raises the signal after its
    graceful shutdown; this handler then unwinds the rest.
    """

    def request_shutdown(signum: int, _frame: FrameType | None) -> None:
        raise ShutdownRequested(signal.Signals(signum).name)

    previous = {
        sig: signal.signal(sig, request_shutdown) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="voicechat")
def cli() -> None:
    """voicechat: self-hosted voice and text chat.

    Configuration comes from VOICECHAT_* variables (or a .env file, or the TOML file named
    by VOICECHAT_CONFIG_FILE); flags override them.
    """


@cli.command()
@_core_options
@click.option(
    "--workers", help="API worker processes; 0: one per usable core [VOICECHAT_WORKERS, 0]."
)
def serve(**flags: Any) -> None:
    """Run the API (and, unless configured otherwise, embedded PostgreSQL and Valkey).

    With several workers (VOICECHAT_WORKERS, default one per core) the API runs in that many
    processes sharing the port, and the SFU in one voice node process beside them. Stops
    everything it started on Ctrl-C or SIGTERM.
    """
    from voicechat.api.workers import worker_count

    settings = _load(**flags)
    configure_logging(settings.log_level, settings.log_format)
    _prepare_data_dir(settings)
    workers = worker_count(settings)
    click.echo(f"voicechat {__version__} ({settings.env.value})")
    click.echo(f"  data dir  {settings.data_dir}")
    try:
        with _shutdown_on_signals(), _backing_services(settings) as resolved:
            click.echo(f"  files     {resolved.storage_url or resolved.files_dir}")
            if workers == 1:
                _serve_one_process(resolved)
            else:
                _serve_workers(resolved, workers)
    except ShutdownRequested as why:
        click.echo(f"voicechat: stopped ({why})", err=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    from voicechat.api.http_limits import uvicorn_options
    from voicechat.gateway import MAX_FRAME_BYTES, WS_IMPLEMENTATION

    return {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "ws": WS_IMPLEMENTATION,
        "ws_max_size": MAX_FRAME_BYTES,
        # Compressing each event once per socket costs more CPU and memory than the fan-out
        # itself (docs/gateway.md); TLS at the proxy, frames stay small.
        "ws_per_message_deflate": False,
        # Request line, header, body and slow-client limits; proxies: api/proxies.py.
        **uvicorn_options(settings),
    }


def _serve_one_process(resolved: Settings) -> None:
    import uvicorn

    from voicechat.api import create_app

    click.echo(f"  api       http://{_url_host(resolved.host)}:{resolved.port}")
    server = uvicorn.Server(uvicorn.Config(create_app(resolved), **_uvicorn_options(resolved)))
    server.run()
    if not server.started:
        _fail(f"the API did not start on {resolved.host}:{resolved.port} (see the log)")


def _serve_workers(resolved: Settings, workers: int) -> None:
    """The port bound here, shared state prepared once, then the worker supervisor."""
    from functools import partial

    import uvicorn

    from voicechat.api.workers import WorkerApp, WorkerSupervisor, spawn_voice_node

    _prepare_shared_state(resolved)
    # The SFU cannot be split across workers: one voice node process holds every call and the
    # workers drive it over Valkey (api/workers.py says more).
    own_voice_node = resolved.voice_mode == "embedded"
    for_workers = (
        resolved.model_copy(update={"voice_mode": "remote"}) if own_voice_node else resolved
    )
    config = uvicorn.Config(
        WorkerApp(for_workers), factory=True, workers=workers, **_uvicorn_options(resolved)
    )
    try:
        listening = config.bind_socket()
    except SystemExit:
        _fail(f"cannot listen on {resolved.host}:{resolved.port} (see the log)")
    click.echo(f"  api       http://{_url_host(resolved.host)}:{resolved.port} ({workers} workers)")
    if own_voice_node:
        click.echo("  voice     one voice node process for every worker (docs/voice.md)")
    supervisor = WorkerSupervisor(
        config,
        [listening],
        voice_node=partial(spawn_voice_node, _voice_node_main, resolved)
        if own_voice_node
        else None,
    )
    try:
        supervisor.run()
    finally:
        listening.close()
    if supervisor.stopped_by is None:
        _fail("the API workers did not start (see the log)")
    click.echo(f"voicechat: stopped ({supervisor.stopped_by})", err=True)


def _prepare_shared_state(settings: Settings) -> None:
    """What workers must not race over: the development keys and the schema migrations."""
    import asyncpg

    from voicechat.db import apply_migrations
    from voicechat.db.pool import dedicated_connection
    from voicechat.errors import MigrationError
    from voicechat.server_keys import load_server_keys

    load_server_keys(settings)
    assert settings.database_url is not None
    dsn = settings.database_url.get_secret_value()

    async def migrate() -> None:
        async with dedicated_connection(dsn, connect_timeout=settings.db_connect_timeout) as conn:
            for migration in await apply_migrations(conn):
                log.info("schema migrated to %04d_%s", migration.version, migration.name)

    try:
        asyncio.run(migrate())
    except MigrationError as exc:
        _fail(f"migration refused: {exc}")
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        # The class and errno say enough; the message could echo the DSN.
        _fail(f"cannot reach the database: {type(exc).__name__} {getattr(exc, 'errno', '')}")


def _voice_node_main(settings: Settings) -> None:
    """The voice node process `serve` runs beside its workers (a spawned interpreter)."""
    from voicechat.api.workers import die_with_parent

    die_with_parent()
    configure_logging(settings.log_level, settings.log_format)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run_voice_node(settings))


@cli.command()
@_voice_options
def voice(**flags: Any) -> None:
    """Run a voice node: the SFU in its own process, driven by the API over Valkey.

    Needs the Valkey the API instances use (they run with VOICECHAT_VOICE_MODE=remote). Leaves
    every room and deregisters on Ctrl-C or SIGTERM.
    """
    settings = _load(**flags)
    if settings.valkey_url is None:
        _fail(
            "VOICECHAT_VALKEY_URL is required for a voice node (it meets the API there)",
            EXIT_CONFIG,
        )
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(_run_voice_node(settings))
    except ShutdownRequested as why:
        click.echo(f"voicechat: stopped ({why})", err=True)


async def _run_voice_node(settings: Settings) -> None:
    from redis.exceptions import RedisError

    from voicechat._native import SfuError
    from voicechat.cache import create_cache
    from voicechat.voice import sfu_config
    from voicechat.voice.media import check_socket_buffers
    from voicechat.voice.node import VoiceNode

    assert settings.valkey_url is not None
    cache = create_cache(
        settings.valkey_url.get_secret_value(),
        max_connections=8,
        pool_timeout=settings.valkey_pool_timeout,
        timeout=settings.valkey_timeout,
    )
    try:
        try:
            node = VoiceNode(
                cache,
                sfu_config(settings),
                capacity=settings.voice_node_capacity,
                alive_file=settings.voice_alive_file,
            )
            await node.start()
        except (RedisError, OSError) as exc:
            # The class says enough; the message could echo the URL and its password.
            _fail(f"cannot reach Valkey: {type(exc).__name__}")
        except SfuError as exc:
            _fail(
                f"cannot start the SFU on udp {settings.media_bind_ip}:{settings.media_port}: {exc}"
            )
        host, port = node.address
        click.echo(f"voicechat {__version__} voice node {node.node_id}")
        click.echo("  valkey    external (VOICECHAT_VALKEY_URL)")
        assert node.sfu is not None
        ports = node.sfu.ports
        click.echo(f"  media     udp {_url_host(host)}:{ports} (capacity {node.capacity})")
        log.info("voice node %s: serving udp %s:%d", node.node_id, host, port)
        check_socket_buffers(node.sfu)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await node.run(stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        click.echo("voicechat: voice node stopped", err=True)
    finally:
        await cache.aclose()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@cli.command()
@_core_options
def migrate(**flags: Any) -> None:
    """Apply pending schema migrations and exit (safe to run again)."""
    from voicechat.db import apply_migrations, create_pool, schema_version

    settings = _load(**flags)
    configure_logging(settings.log_level, settings.log_format)
    _prepare_data_dir(settings)

    async def run(dsn: str) -> list[str]:
        pool = await create_pool(dsn, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                applied = await apply_migrations(conn)
                current = await schema_version(conn)
        finally:
            await pool.close()
        names = [f"{m.version:04d}_{m.name}" for m in applied]
        click.echo(f"schema at version {current:04d}")
        return names

    import asyncpg

    from voicechat.errors import MigrationError

    with _shutdown_on_signals(), _backing_services(settings, need_valkey=False) as resolved:
        assert resolved.database_url is not None
        try:
            applied = asyncio.run(run(resolved.database_url.get_secret_value()))
        except MigrationError as exc:
            _fail(f"migration refused: {exc}")
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            # The class and errno say enough; the message could echo the DSN.
            _fail(f"cannot reach the database: {type(exc).__name__} {getattr(exc, 'errno', '')}")
    click.echo("applied: " + ", ".join(applied) if applied else "nothing to apply")


@cli.command()
def version() -> None:
    """Print the versions of voicechat and its native module."""
    from voicechat import _native

    click.echo(f"voicechat {__version__}")
    click.echo(f"native    {_native.__version__}")
    click.echo(f"python    {sys.version.split()[0]}")


@cli.group()
def backup() -> None:
    """Encrypted backups of the database, the files and the configuration (docs/backup.md).

    Backups go to VOICECHAT_BACKUP_URL, encrypted under VOICECHAT_BACKUP_KEY.
    """


@contextmanager
def _refusals() -> Iterator[None]:
    """A refused or failed backup operation ends with one line and exit status 1."""
    import asyncpg
    from botocore.exceptions import BotoCoreError, ClientError

    from voicechat.backup.archive import BackupRefused

    try:
        yield
    except BackupRefused as exc:
        _fail(str(exc))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "no code")
        _fail(f"the S3 server refused the request ({code})")
    except BotoCoreError as exc:
        _fail(f"S3 cannot be reached ({type(exc).__name__})")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        # The class says enough; the message could echo the DSN.
        _fail(f"the database refused or did not answer ({type(exc).__name__})")
    except OSError as exc:
        _fail(f"{exc.strerror or type(exc).__name__}: {exc.filename or ''}".rstrip(": "))


def _emit_json(value: object) -> None:
    import json

    click.echo(json.dumps(value, indent=2, default=str))


@backup.command("create")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
def backup_create(as_json: bool) -> None:
    """Back up the database, the file objects and the configuration, encrypted."""
    from dataclasses import asdict

    from voicechat.backup.create import create_backup

    settings = _load()
    configure_logging(settings.log_level, settings.log_format)
    on_terminal = sys.stderr.isatty()

    def progress(what: str, detail: str) -> None:
        if on_terminal:
            click.echo(f"\r  {what:<9} {detail}\033[K", err=True, nl=what != "files")
        elif what != "files":
            click.echo(f"  {what:<9} {detail}", err=True)

    with _refusals():
        summary = create_backup(settings, progress=progress)
    if on_terminal and summary.files:
        click.echo("", err=True)
    if as_json:
        _emit_json(asdict(summary))
        return
    click.echo(
        f"backup {summary.id}: {summary.size_bytes} bytes ({summary.files} files, schema "
        f"{summary.schema_version:04d}) in {summary.location}, {summary.seconds:.1f} s"
    )
    for key in summary.missing_objects:
        click.echo(f"  warning: object {key} was missing from the storage", err=True)


@backup.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable list.")
def backup_list(as_json: bool) -> None:
    """Show the backups with their age and size, oldest first."""
    from datetime import UTC, datetime

    from voicechat.backup.store import open_store

    settings = _load()
    with _refusals():
        store = open_store(settings)
        backups = store.list()
    now = datetime.now(UTC)
    if as_json:
        _emit_json(
            [
                {
                    "id": b.id,
                    "created_at": b.created_at.isoformat(),
                    "age_seconds": int((now - b.created_at).total_seconds()),
                    "size_bytes": b.size,
                }
                for b in backups
            ]
        )
        return
    if not backups:
        click.echo(f"no backups in {store.description}")
        return
    click.echo(f"{'ID':<20} {'AGE':>10} {'SIZE':>14}")
    for b in backups:
        click.echo(f"{b.id:<20} {_age(now - b.created_at):>10} {b.size:>14,}")


def _age(delta: Any) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


@backup.command("verify")
@click.argument("which", metavar="ID|latest")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable result.")
def backup_verify(which: str, as_json: bool) -> None:
    """Decrypt a backup and check every part against its manifest; restores nothing."""
    from voicechat.backup.create import backup_key
    from voicechat.backup.restore import open_verified, resolve
    from voicechat.backup.store import open_store

    settings = _load()
    with _refusals():
        store = open_store(settings)
        found = resolve(store, which)
        verified = open_verified(store, found, backup_key(settings), staging=None)
    header = verified.header
    result = {
        "id": header.id,
        "created_at": header.created_at,
        "voicechat_version": header.voicechat_version,
        "schema_version": header.schema_version,
        "parts": len(verified.manifest.parts),
        "files": len(verified.manifest.file_parts),
        "archive_bytes": verified.archive_bytes,
        "ok": True,
    }
    if as_json:
        _emit_json(result)
        return
    click.echo(
        f"backup {header.id} is intact: {result['parts']} parts ({result['files']} files), "
        f"schema {header.schema_version:04d}, voicechat {header.voicechat_version}"
    )
    if verified.manifest.missing_objects:
        click.echo(
            f"  warning: {len(verified.manifest.missing_objects)} objects the database names "
            "were missing from the storage when the backup was made",
            err=True,
        )


@backup.command("prune")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted, delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the deleted ids as JSON.")
def backup_prune(dry_run: bool, as_json: bool) -> None:
    """Delete backups older than VOICECHAT_BACKUP_RETENTION_DAYS; the newest always stays."""
    from datetime import UTC, datetime

    from voicechat.backup.store import expired, open_store, prune

    settings = _load()
    with _refusals():
        store = open_store(settings)
        now = datetime.now(UTC)
        days = settings.backup_retention_days
        doomed = expired(store.list(), days, now) if dry_run else prune(store, days, now)
    if as_json:
        _emit_json(
            {
                "deleted": [] if dry_run else [b.id for b in doomed],
                "would_delete": [b.id for b in doomed] if dry_run else [],
            }
        )
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} {len(doomed)} backups older than {settings.backup_retention_days} days"
        + (": " + ", ".join(b.id for b in doomed) if doomed else "")
    )


@backup.command("restore")
@click.argument("which", metavar="ID|latest")
@click.option("--stop", is_flag=True, help="Stop the server running on this data dir first.")
def backup_restore(which: str, stop: bool) -> None:
    """Restore a backup: database, then files, then configuration; then a health check.

    The whole backup is decrypted and checked before anything is changed.
    """
    from voicechat.backup.create import backup_key
    from voicechat.backup.restore import resolve, restore_backup
    from voicechat.backup.store import open_store

    settings = _load()
    configure_logging(settings.log_level, settings.log_format)

    def report(step: str, seconds: float) -> None:
        click.echo(f"  [{seconds:7.1f} s] {step}")

    with _refusals():
        store = open_store(settings)
        found = resolve(store, which)
        click.echo(f"restoring backup {found.id} from {store.description} to {settings.data_dir}")
        result = restore_backup(
            settings, store, found, backup_key(settings), stop_server=stop, report=report
        )
    status = result.health.get("status")
    if status != "ok":
        down = {
            name: part.get("detail") or part.get("status")
            for name, part in (result.health.get("components") or {}).items()
            if part.get("status") != "ok"
        }
        _fail(f"restored, but the health check says {status}: {down or result.health}")
    click.echo(f"restored backup {result.backup_id}; health: ok")


@backup.command("archive-wal")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("name")
def backup_archive_wal(path: Path, name: str) -> None:
    """Archive one WAL file, encrypted, beside the backups: PostgreSQL's archive_command.

    Run by PostgreSQL in its data directory as `archive-wal %p %f`; exits non-zero on any
    failure (PostgreSQL retries), 0 for a file archived before with the same content.
    """
    from voicechat.backup.create import backup_key
    from voicechat.backup.store import open_store
    from voicechat.backup.wal import archive_segment

    settings = _load()
    with _refusals():
        control = Path("global/pg_control").read_bytes()[:8]
        cluster = int.from_bytes(control, sys.byteorder)
        archive_segment(open_store(settings), backup_key(settings), cluster, path, name)


@backup.command("run-scheduler")
def backup_run_scheduler() -> None:
    """Make the scheduled backups (VOICECHAT_BACKUP_SCHEDULE) in this process, until stopped.

    For a backup container beside the API; `voicechat serve` runs the same scheduler. Several
    may run: one takes each scheduled time (a Valkey lock).
    """
    settings = _load()
    configure_logging(settings.log_level, settings.log_format)
    if settings.valkey_url is None:
        _fail("VOICECHAT_VALKEY_URL is required (the schedulers meet there)", EXIT_CONFIG)
    with _refusals():
        from voicechat.backup.create import backup_key
        from voicechat.backup.store import open_store

        backup_key(settings)
        open_store(settings)
    asyncio.run(_run_backup_scheduler(settings))


async def _run_backup_scheduler(settings: Settings) -> None:
    from datetime import UTC, datetime
    from uuid import uuid4

    from redis.exceptions import RedisError

    from voicechat.backup.schedule import BackupScheduler, next_run
    from voicechat.cache import create_cache

    assert settings.valkey_url is not None
    cache = create_cache(settings.valkey_url.get_secret_value(), max_connections=4)
    try:
        await cache.ping()
    except (RedisError, OSError) as exc:
        await cache.aclose()
        # The class says enough; the message could echo the URL and its password.
        _fail(f"cannot reach Valkey: {type(exc).__name__}")
    scheduler = BackupScheduler(settings, cache, instance_id=f"scheduler-{uuid4().hex[:8]}")
    first = next_run(settings.backup_schedule, datetime.now(UTC))
    click.echo(f"voicechat {__version__} backup scheduler: next backup at {first:%Y-%m-%d %H:%M}Z")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    scheduler.start()
    try:
        await stop.wait()
    finally:
        await scheduler.stop()
        await cache.aclose()
    click.echo("voicechat: backup scheduler stopped", err=True)


cli.add_command(admin)


def main() -> None:
    """Entry point of the `voicechat` script."""
    cli(prog_name="voicechat")
