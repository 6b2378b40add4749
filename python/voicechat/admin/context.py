"""What every `voicechat admin` command shares: settings, a database connection, output.

An admin command works on the server's own database with the server's settings (the same
`VOICECHAT_*` variables, `.env` or TOML file). When the database is left unconfigured it is the
embedded PostgreSQL in the data dir: a running `voicechat serve` holds it (its root's lock), and
then the command connects to that server; otherwise the command starts it for its own duration,
as `voicechat migrate` does, and stops it afterwards. Valkey likewise, for the commands that end
sessions. A subcommand is an ordinary click command that calls :func:`run` with a coroutine::

    @users.command("list")
    @json_option
    def users_list(as_json: bool) -> None:
        rows = run(lambda db: list_users(db.conn))
        emit(rows, [("id", "ID"), ("username", "USERNAME")], as_json=as_json)

Refusals end the process with one line on stderr: exit status 2 for bad configuration, 1 for
everything else (:func:`fail`).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from voicechat.cache import Cache
from voicechat.db.pool import Connection
from voicechat.errors import VoicechatError
from voicechat.settings import Settings, SettingsError, load_settings

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

EXIT_CONFIG = 2

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON instead of a table (for scripts)."
)
"""The `--json` flag every admin command takes (passed as `as_json`)."""


def fail(message: str, status: int = 1) -> NoReturn:
    """End the command with one line on stderr and `status`."""
    click.echo(f"voicechat: {message}", err=True)
    sys.exit(status)


def load() -> Settings:
    """The server's settings, or exit status 2 naming the wrong variable."""
    try:
        return load_settings()
    except SettingsError as exc:
        fail(f"invalid configuration: {exc}", EXIT_CONFIG)


@dataclass(frozen=True, slots=True)
class AdminContext:
    """What a command's coroutine gets: the settings, a connection, Valkey if asked for."""

    settings: Settings
    conn: Connection
    cache: Cache | None


def _held_by_another_process(root: Path) -> bool:
    """Whether a live process (a `serve`) manages the embedded server in `root` right now."""
    lock = root / "lock"
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _running_url(root: Path, password_file: str, template: str) -> str:
    try:
        port = int((root / "port").read_text().strip())
        password = (root / password_file).read_text().strip()
    except (OSError, ValueError):
        fail(f"a server runs in {root} but its port or password cannot be read")
    from urllib.parse import quote

    return template.format(password=quote(password, safe=""), port=port)


@contextmanager
def backing_urls(settings: Settings, *, need_valkey: bool) -> Iterator[tuple[str, str | None]]:
    """The database DSN and (if `need_valkey`) the Valkey URL of the server's settings.

    Unconfigured ones are the embedded servers of the data dir: the running `serve`'s, or
    started here for the duration (and stopped on exit).
    """
    from voicechat.embedded import EmbeddedError, EmbeddedPostgres, EmbeddedValkey

    with ExitStack() as stack:
        try:
            if settings.database_url is not None:
                dsn = settings.database_url.get_secret_value()
            else:
                root = settings.data_dir / "postgres"
                if _held_by_another_process(root):
                    dsn = _running_url(
                        root,
                        "voicechat.password",
                        "postgresql://voicechat:{password}@127.0.0.1:{port}/voicechat",
                    )
                else:
                    postgres = EmbeddedPostgres(root)
                    dsn = postgres.start()
                    stack.callback(postgres.stop)
            valkey_url: str | None = None
            if need_valkey and settings.valkey_url is not None:
                valkey_url = settings.valkey_url.get_secret_value()
            elif need_valkey:
                root = settings.data_dir / "valkey"
                if _held_by_another_process(root):
                    valkey_url = _running_url(
                        root, "password", "redis://:{password}@127.0.0.1:{port}/0"
                    )
                else:
                    valkey = EmbeddedValkey(root)
                    valkey_url = valkey.start()
                    stack.callback(valkey.stop)
        except EmbeddedError as exc:
            where = f" (log: {exc.log_path})" if exc.log_path is not None else ""
            fail(f"{exc.message}{where}")
        yield dsn, valkey_url


@asynccontextmanager
async def _opened(
    settings: Settings, dsn: str, valkey_url: str | None
) -> AsyncIterator[AdminContext]:
    from voicechat.cache import create_cache
    from voicechat.db.pool import dedicated_connection

    async with dedicated_connection(dsn, connect_timeout=settings.db_connect_timeout) as conn:
        cache = None
        if valkey_url is not None:
            cache = create_cache(valkey_url, max_connections=4)
        try:
            yield AdminContext(settings, conn, cache)
        finally:
            if cache is not None:
                await cache.aclose()


def run(
    work: Callable[[AdminContext], Awaitable[T]],
    *,
    need_valkey: bool = False,
    settings: Settings | None = None,
) -> T:
    """Run `work` with a connection to the server's database (and Valkey if asked); its
    refusals (a domain error) and an unreachable database end the command with one line."""
    import asyncpg
    from redis.exceptions import RedisError

    settings = settings if settings is not None else load()

    async def main(dsn: str, valkey_url: str | None) -> T:
        async with _opened(settings, dsn, valkey_url) as context:
            return await work(context)

    with backing_urls(settings, need_valkey=need_valkey) as (dsn, valkey_url):
        try:
            return asyncio.run(main(dsn, valkey_url))
        except VoicechatError as exc:
            fail(f"{exc} ({exc.code})")
        except (asyncpg.UndefinedColumnError, asyncpg.UndefinedTableError):
            fail("the database schema is older than this voicechat: run `voicechat migrate`")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The class and errno say enough; the message could echo the DSN.
            fail(f"cannot reach the database: {type(exc).__name__} {getattr(exc, 'errno', '')}")
        except RedisError as exc:
            fail(f"cannot reach Valkey: {type(exc).__name__}")


def _plain(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(_cell(item) for item in value) or "-"
    if hasattr(value, "strftime"):
        return str(value.strftime("%Y-%m-%d %H:%M"))
    return str(value)


def emit(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    *,
    as_json: bool,
    empty: str = "nothing to show",
) -> None:
    """Print `rows` as an aligned table of `columns` ((key, HEADER) pairs), or as JSON.

    JSON prints every key of every row (ISO 8601 times, UUIDs as strings), not only the
    table's columns.
    """
    if as_json:
        click.echo(json.dumps([_plain(row) for row in rows], indent=2))
        return
    if not rows:
        click.echo(empty)
        return
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [
        max(len(header), *(len(line[i]) for line in cells)) for i, (_, header) in enumerate(columns)
    ]
    click.echo("  ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True)).rstrip())
    for line in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def emit_record(row: dict[str, Any], *, as_json: bool) -> None:
    """Print one record as `key: value` lines, or as a JSON object."""
    if as_json:
        click.echo(json.dumps(_plain(row), indent=2))
        return
    width = max((len(key) for key in row), default=0)
    for key, value in row.items():
        click.echo(f"{key.ljust(width)}  {_cell(value)}")
