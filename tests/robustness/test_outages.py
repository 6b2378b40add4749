"""Dependencies that fail, fail cleanly: a live `voicechat serve` while its PostgreSQL, Valkey or
S3 server is paused (SIGSTOP), stopped and started again.

Each test gives the server a dependency of its own to break (an embedded PostgreSQL, an
embedded Valkey, a moto server) and checks what a client sees (docs/reliability.md, "When a
dependency fails"): 503 `<dependency>_unavailable` in the error shape with `Retry-After`, no
request left hanging (every client call has a 5 s timeout and must come back with an answer),
routes that do not need the dependency still answering, a new WebSocket closed with 1013, and
service back by itself once the dependency is, without restarting voicechat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import LiveServer
from tests.utils.auth import bearer, register
from tests.utils.dirs import service_dir
from tests.utils.net import free_port
from voicechat.api import create_app
from voicechat.embedded import EmbeddedPostgres, EmbeddedValkey
from voicechat.settings import Settings

#: No request may take longer than this to answer (SPEC §11: "within a few seconds").
HANG_BOUND_SECONDS = 5.0
#: How long a dependency that came back may take to be used again.
RECOVERY_SECONDS = 20.0

S3_KEY, S3_SECRET, S3_REGION = "outage-key", "outage-secret-key", "us-east-1"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _signal_tree(pid: int, sig: signal.Signals) -> None:
    # PostgreSQL is a postmaster and one process per connection: freeze them all, as a
    # stalled host would.
    for each in [pid, *_children(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(each, sig)


def assert_unavailable(response: httpx.Response, code: str) -> None:
    """A 503 in the error shape, with its dependency's code and Retry-After."""
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == code, response.text
    assert int(response.headers["Retry-After"]) >= 1


def assert_no_errors(server: LiveServer) -> None:
    """An outage is logged as warnings: no ERROR record, no 500."""
    for line in server.log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        assert record.get("level") not in ("ERROR", "CRITICAL"), line
        assert " 500 " not in str(record.get("message", "")), line


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until `check` holds (the server recovers by itself)."""
    deadline = time.monotonic() + RECOVERY_SECONDS
    while not await check():
        assert time.monotonic() < deadline, "the server did not recover"
        await asyncio.sleep(0.3)


async def until_noticed(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """Wait until an authenticated request is refused for want of Valkey (within 5 s)."""
    deadline = time.monotonic() + HANG_BOUND_SECONDS
    while (response := await http.get("/users/@me", headers=headers)).status_code == 200:
        assert time.monotonic() < deadline, "the server did not notice that Valkey is paused"
        await asyncio.sleep(0.1)
    assert_unavailable(response, "valkey_unavailable")


async def ws_close_code(server: LiveServer, token: str) -> int | None:
    """Open a socket, authenticate, and return the close code the server ends it with."""
    url = server.base_url.replace("http://", "ws://") + "/ws"
    async with asyncio.timeout(HANG_BOUND_SECONDS + 3):
        async with connect(url, open_timeout=HANG_BOUND_SECONDS) as ws:
            try:
                # Refused before `auth` (counting the attempt needs Valkey) or after it.
                await ws.send(json.dumps(_auth(token)))
                while True:
                    await ws.recv()
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd is not None else None


async def _until_closed(ws: ClientConnection) -> int | None:
    """The close code the server ends `ws` with (within 10 s)."""
    async with asyncio.timeout(10):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None


def _auth(token: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": "auth", "params": {"token": token}}


def _client(server: LiveServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, timeout=HANG_BOUND_SECONDS)


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"VOICECHAT_DATA_DIR": str(tmp_path / "live-data"), **values}


@pytest.fixture
def own_valkey() -> Iterator[EmbeddedValkey]:
    root = service_dir("valkey-outage")
    server = EmbeddedValkey(root / "valkey")
    server.start()
    try:
        yield server
    finally:
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    root = service_dir("pg-outage")
    server = EmbeddedPostgres(root / "postgres")
    server.start()
    try:
        yield server
    finally:
        if server.pid is not None:
            _signal_tree(server.pid, signal.SIGCONT)
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


class MotoServer:
    """A moto S3 server this test may freeze, kill and start again on the same port."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.root = root
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, bucket: str) -> None:
        env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
        with (self.root / "moto.log").open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.endpoint}/moto-api/", timeout=1.0)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "moto did not start"
                time.sleep(0.1)
        # moto keeps buckets in memory: a restarted server starts empty.
        boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=S3_REGION,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
        ).create_bucket(Bucket=bucket)

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def own_moto() -> Iterator[MotoServer]:
    root = service_dir("moto-outage")
    server = MotoServer(root)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_valkey_paused_stopped_and_restarted(
    live_server_factory: Callable[..., LiveServer],
    own_valkey: EmbeddedValkey,
    database_url: str,
    tmp_path: Path,
) -> None:
    server = live_server_factory(
        _env(tmp_path, VOICECHAT_DATABASE_URL=database_url, VOICECHAT_VALKEY_URL=own_valkey.url)
    )
    async with _client(server) as http:
        token = (await register(http, "valkey-outage"))["access_token"]
        headers = bearer(token)
        assert (await http.get("/users/@me", headers=headers)).status_code == 200

        async def served() -> bool:
            return (await http.get("/users/@me", headers=headers)).status_code == 200

        async def during_outage() -> None:
            answers = await asyncio.gather(
                *(http.get("/users/@me", headers=headers) for _ in range(10)),
                http.post("/auth/login", json={"username": "valkey-outage", "password": "x"}),
            )
            for response in answers:
                assert_unavailable(response, "valkey_unavailable")
            # What does not need Valkey keeps answering; /health says what is down.
            assert (await http.get("/openapi.json")).status_code == 200
            health = await http.get("/health")
            assert health.status_code == 503
            assert health.json()["components"]["valkey"]["status"] == "down"
            assert health.json()["components"]["postgres"]["status"] == "ok"
            assert await ws_close_code(server, token) == 1013

        assert own_valkey.pid is not None
        os.kill(own_valkey.pid, signal.SIGSTOP)
        try:
            # A session checked within the last second is answered from memory until the
            # server notices the pause (a PING on its revocation subscription unanswered for
            # 0.6 s; docs/auth.md): a paused Valkey ends no session meanwhile. From then on
            # every authenticated request needs Valkey again.
            await until_noticed(http, headers)
            await during_outage()
        finally:
            os.kill(own_valkey.pid, signal.SIGCONT)
        await eventually(served)

        # An open socket misses events once the server loses its subscription: it is closed
        # with 1013 so that its client comes back and catches up.
        url = server.base_url.replace("http://", "ws://") + "/ws"
        async with connect(url, open_timeout=HANG_BOUND_SECONDS) as open_socket:
            await open_socket.send(json.dumps(_auth(token)))
            assert "result" in json.loads(await open_socket.recv())
            own_valkey.stop()
            await during_outage()
            assert await _until_closed(open_socket) == 1013
        own_valkey.start()
        await eventually(served)
        assert await ws_close_code_after_auth_ok(server, token)
    assert_no_errors(server)


async def ws_close_code_after_auth_ok(server: LiveServer, token: str) -> bool:
    """A socket authenticates again once the dependency is back."""
    url = server.base_url.replace("http://", "ws://") + "/ws"
    async with asyncio.timeout(HANG_BOUND_SECONDS + 3):
        async with connect(url, open_timeout=HANG_BOUND_SECONDS) as ws:
            await ws.send(json.dumps(_auth(token)))
            answer: dict[str, Any] = json.loads(await ws.recv())
            return "result" in answer


async def test_postgres_paused_stopped_and_restarted(
    live_server_factory: Callable[..., LiveServer],
    own_postgres: EmbeddedPostgres,
    clean_valkey: str,
    tmp_path: Path,
) -> None:
    server = live_server_factory(
        _env(tmp_path, VOICECHAT_DATABASE_URL=own_postgres.dsn, VOICECHAT_VALKEY_URL=clean_valkey)
    )
    async with _client(server) as http:
        token = (await register(http, "pg-outage"))["access_token"]
        headers = bearer(token)
        assert (await http.get("/channels", headers=headers)).status_code == 200

        async def served() -> bool:
            return (await http.get("/channels", headers=headers)).status_code == 200

        async def during_outage() -> None:
            answers = await asyncio.gather(
                *(http.get("/channels", headers=headers) for _ in range(10)),
                http.post("/auth/register", json={"username": "late", "password": "x" * 12}),
            )
            for response in answers:
                assert_unavailable(response, "database_unavailable")
            assert (await http.get("/openapi.json")).status_code == 200
            health = await http.get("/health")
            assert health.status_code == 503
            assert health.json()["components"]["postgres"]["status"] == "down"
            assert health.json()["components"]["valkey"]["status"] == "ok"

        assert own_postgres.pid is not None
        _signal_tree(own_postgres.pid, signal.SIGSTOP)
        try:
            await during_outage()
        finally:
            _signal_tree(own_postgres.pid, signal.SIGCONT)
        await eventually(served)

        own_postgres.stop()
        await during_outage()
        own_postgres.start()
        await eventually(served)
    assert_no_errors(server)


async def test_s3_paused_stopped_and_restarted(
    live_server_factory: Callable[..., LiveServer],
    own_moto: MotoServer,
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> None:
    own_moto.start("outage")
    server = live_server_factory(
        _env(
            tmp_path,
            VOICECHAT_DATABASE_URL=database_url,
            VOICECHAT_VALKEY_URL=clean_valkey,
            VOICECHAT_STORAGE_URL="s3://outage/uploads",
            VOICECHAT_S3_ENDPOINT_URL=own_moto.endpoint,
            VOICECHAT_S3_REGION=S3_REGION,
            VOICECHAT_S3_ACCESS_KEY_ID=S3_KEY,
            VOICECHAT_S3_SECRET_ACCESS_KEY=S3_SECRET,
        )
    )
    async with _client(server) as http:
        headers = bearer((await register(http, "s3-outage"))["access_token"])

        async def upload() -> httpx.Response:
            files = {"file": ("note.txt", b"hello outage", "text/plain")}
            return await http.post("/upload", headers=headers, files=files)

        stored = await upload()
        assert stored.status_code == 201, stored.text
        file_url = f"/files/{stored.json()['id']}"

        async def served() -> bool:
            return (await upload()).status_code == 201

        async def during_outage() -> None:
            answers = await asyncio.gather(
                *(upload() for _ in range(4)), http.get(file_url, headers=headers)
            )
            for response in answers:
                assert_unavailable(response, "storage_unavailable")
            # Chat does not need storage.
            assert (await http.get("/channels", headers=headers)).status_code == 200
            health = await http.get("/health")
            assert health.json()["components"]["storage"]["status"] == "down"
            assert (await http.get("/health/ready")).status_code == 200

        own_moto.signal(signal.SIGSTOP)
        try:
            await during_outage()
        finally:
            own_moto.signal(signal.SIGCONT)
        await eventually(served)

        own_moto.stop()
        await during_outage()
        own_moto.start("outage")
        await eventually(served)
    assert_no_errors(server)


async def test_a_valkey_pool_held_busy_makes_callers_wait_then_503(
    settings_factory: Callable[..., Settings], database_url: str, clean_valkey: str
) -> None:
    # Every pooled connection busy (a burst of sockets, say): a request waits for one up to
    # VOICECHAT_VALKEY_POOL_TIMEOUT, gets it when one comes back, else 503, never 500.
    app = create_app(
        settings_factory(
            database_url=database_url,
            valkey_url=clean_valkey,
            valkey_pool_size=4,
            valkey_pool_timeout=0.5,
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            headers = bearer((await register(http, "pool-user"))["access_token"])
            pool = app.state.resources.cache.connection_pool
            held = []
            while pool.can_get_connection():
                held.append(await pool.get_connection())
            refused = await http.get("/users/@me", headers=headers)
            # One connection coming back while a request waits is enough for it.
            waiting = asyncio.create_task(http.get("/users/@me", headers=headers))
            await asyncio.sleep(0.1)
            await pool.release(held.pop())
            served = await waiting
            for connection in held:
                await pool.release(connection)
    assert_unavailable(refused, "valkey_unavailable")
    assert served.status_code == 200, served.text
