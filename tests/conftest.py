"""Fixtures: a real PostgreSQL (a fresh database per test), a real Valkey, the ASGI app, and a
live server process.

PostgreSQL and Valkey are the embedded servers voicechat itself ships (real `postgres` and
`valkey-server` processes), started once per test session, unless the environment names
servers to use instead (`VOICECHAT_TEST_DATABASE_URL`, `VOICECHAT_TEST_VALKEY_URL`).

`scripts/test.sh` runs the suite in parallel workers (pytest-xdist). Each worker is a session of
its own, so it starts its own embedded servers; with external servers, each worker keeps to its
own template database and its own Valkey logical database (`WORKER_INDEX`), so no worker ever
drops or flushes another's data.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from redis import Redis

from tests.utils.auth import ApiUser, api_user
from tests.utils.dirs import service_dir
from tests.utils.net import free_port, wait_for_health
from voicechat.api import create_app
from voicechat.db import apply_migrations
from voicechat.embedded import EmbeddedPostgres, EmbeddedValkey
from voicechat.settings import Settings

# "gw0", "gw1", ... under pytest-xdist; "master" when the suite runs in one process.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "master")
WORKER_INDEX = int(WORKER[2:]) if WORKER.startswith("gw") else 0
TEMPLATE_DB = f"voicechat_test_template_{WORKER}"


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of a PostgreSQL server whose role may create databases."""
    external = os.environ.get("VOICECHAT_TEST_DATABASE_URL")
    if external:
        yield external
        return
    root = service_dir("pg")
    server = EmbeddedPostgres(root / "postgres")
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def valkey_url() -> Iterator[str]:
    """URL of a Valkey server shared by the session (flushed before each test that uses it)."""
    external = os.environ.get("VOICECHAT_TEST_VALKEY_URL")
    if external:
        # Logical database 1 + worker index: the URL's own database (0 by default) is left
        # alone, and parallel workers never flush each other's keys.
        parts = urlsplit(external)
        yield urlunsplit(parts._replace(path=f"/{1 + WORKER_INDEX}"))
        return
    root = service_dir("valkey")
    server = EmbeddedValkey(root / "valkey")
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def template_database(postgres_dsn: str) -> str:
    """A migrated database that each test's database is copied from (CREATE ... TEMPLATE)."""

    async def build() -> None:
        admin = await asyncpg.connect(postgres_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(_with_database(postgres_dsn, TEMPLATE_DB))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()

    import asyncio

    asyncio.run(build())
    return TEMPLATE_DB


@contextmanager
def _scratch_database(postgres_dsn: str, template: str) -> Iterator[str]:
    import asyncio

    name = f"voicechat_test_{uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def drop() -> None:
        # FORCE ends our own leftover connections, but an autovacuum worker (a superuser
        # process) cannot be ended by the unprivileged test role: wait for it to finish.
        for attempt in range(50):
            try:
                await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
                if attempt == 49:
                    raise
                await asyncio.sleep(0.2)

    asyncio.run(admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield _with_database(postgres_dsn, name)
    finally:
        asyncio.run(drop())


@pytest.fixture
def database_url(postgres_dsn: str, template_database: str) -> Iterator[str]:
    """A migrated database of this test's own, dropped afterwards."""
    with _scratch_database(postgres_dsn, template_database) as url:
        yield url


@pytest.fixture
def empty_database_url(postgres_dsn: str) -> Iterator[str]:
    """A database with no schema at all, for migration tests."""
    with _scratch_database(postgres_dsn, "template1") as url:
        yield url


@pytest.fixture
def clean_valkey(valkey_url: str) -> str:
    """The session's Valkey, emptied for this test."""
    with Redis.from_url(valkey_url) as client:
        client.flushdb()
    return valkey_url


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test instance; keyword arguments override."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "master_key": base64.b64encode(secrets.token_bytes(32)).decode(),
            "log_format": "text",
            # Tests sign many users up from one address; rate-limit tests set their own.
            "rate_limit_register_ip": "1000/hour",
            # Tests sign up many users; the registration modes are tested in tests/invites.
            "registration": "open",
            # Each app runs an SFU: let the OS pick its UDP port so apps never collide.
            "media_port": 0,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def settings(
    settings_factory: Callable[..., Settings], database_url: str, clean_valkey: str
) -> Settings:
    """Settings pointing at this test's database and the flushed Valkey."""
    return settings_factory(database_url=database_url, valkey_url=clean_valkey)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    """The API app for this test's settings (lifespan not yet entered)."""
    return create_app(settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process, with its lifespan running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


class LiveServer:
    """A `voicechat serve` process on a free port."""

    def __init__(self, process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.log_path = log_path

    @property
    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout)


@pytest.fixture
def live_server_factory(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start `voicechat serve` processes; all are stopped at the end of the test."""
    started: list[LiveServer] = []

    def start(env: dict[str, str] | None = None, *, wait: bool = True) -> LiveServer:
        port = int((env or {}).get("VOICECHAT_PORT") or free_port())
        log_path = tmp_path / f"serve-{port}.log"
        full_env = {
            **os.environ,
            "VOICECHAT_PORT": str(port),
            "VOICECHAT_LOG_FORMAT": "json",
            "VOICECHAT_RATE_LIMIT_REGISTER_IP": "1000/hour",
            # As settings_factory: open registration unless a test asks for a mode.
            "VOICECHAT_REGISTRATION": "open",
            "VOICECHAT_MEDIA_PORT": "0",
            # One process with the SFU inside unless a test asks for workers (test_workers.py).
            "VOICECHAT_WORKERS": "1",
        }
        full_env.update(env or {})
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "voicechat", "serve"],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=full_env,
            )
        server = LiveServer(process, f"http://127.0.0.1:{port}", log_path)
        started.append(server)
        if wait:
            try:
                wait_for_health(server.base_url, timeout=90)
            except TimeoutError:
                server.stop()
                raise AssertionError(f"server did not become healthy:\n{server.log}") from None
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def live_server(
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> LiveServer:
    """One live server on this test's database and Valkey."""
    return live_server_factory(
        {
            "VOICECHAT_DATABASE_URL": database_url,
            "VOICECHAT_VALKEY_URL": clean_valkey,
            "VOICECHAT_DATA_DIR": str(tmp_path / "live-data"),
        }
    )


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> ApiUser:
    """The first user to register, hence the administrator."""
    return await api_user(client, "admin")


@pytest.fixture
async def alice(client: httpx.AsyncClient, admin: ApiUser) -> ApiUser:
    """An ordinary member."""
    return await api_user(client, "alice")


@pytest.fixture
async def bob(client: httpx.AsyncClient, admin: ApiUser) -> ApiUser:
    """Another ordinary member."""
    return await api_user(client, "bob")
