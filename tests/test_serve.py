"""`voicechat serve` on embedded defaults: start, stop with no stray process, restart with data."""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from tests.conftest import LiveServer
from tests.utils.dirs import service_dir
from voicechat.embedded import EmbeddedPostgres

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir() -> Iterator[Path]:
    root = service_dir("serve")
    yield root / "data"
    shutil.rmtree(root, ignore_errors=True)


def _processes_using(path: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if str(path) in cmdline:
            found.append(proc)
    return found


async def _migration_times(data_dir: Path) -> list[object]:
    server = EmbeddedPostgres(data_dir / "postgres")
    dsn = await asyncio.to_thread(server.start)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT version, applied_at FROM schema_migrations")
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(server.stop)
    return [tuple(row) for row in rows]


def _start(factory: Callable[..., LiveServer], data_dir: Path) -> LiveServer:
    return factory({"VOICECHAT_DATA_DIR": str(data_dir)})


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
async def test_serve_starts_embedded_services_and_stops_them_all(
    live_server_factory: Callable[..., LiveServer], data_dir: Path, stop_signal: signal.Signals
) -> None:
    server = await asyncio.to_thread(_start, live_server_factory, data_dir)
    health = await asyncio.to_thread(httpx.get, f"{server.base_url}/health")
    body = health.json()
    assert body["status"] == "ok"
    assert {name for name, c in body["components"].items() if c["status"] == "ok"} == {
        "postgres",
        "valkey",
        "storage",
        "native",
        "sfu",
    }
    log = server.log
    assert "postgres  embedded" in log
    assert "valkey    embedded" in log
    assert str(data_dir) in log
    assert _processes_using(data_dir), "embedded servers should be running"

    server.process.send_signal(stop_signal)
    status = await asyncio.to_thread(server.process.wait, 60)
    assert status == 0, server.log
    assert "Traceback" not in server.log
    await asyncio.sleep(0.2)
    assert _processes_using(data_dir) == []


async def test_a_second_start_reuses_the_data(
    live_server_factory: Callable[..., LiveServer], data_dir: Path
) -> None:
    first = await asyncio.to_thread(_start, live_server_factory, data_dir)
    assert "applying migration 0001_initial" in first.log
    assert await asyncio.to_thread(first.stop) == 0
    before = await _migration_times(data_dir)

    second = await asyncio.to_thread(_start, live_server_factory, data_dir)
    assert "applying migration" not in second.log
    assert await asyncio.to_thread(second.stop) == 0
    assert await _migration_times(data_dir) == before
    assert _processes_using(data_dir) == []


async def test_external_servers_start_nothing(live_server: LiveServer, tmp_path: Path) -> None:
    assert "postgres  external" in live_server.log
    assert "valkey    external" in live_server.log
    assert not (tmp_path / "live-data" / "postgres").exists()
    assert not (tmp_path / "live-data" / "valkey").exists()
