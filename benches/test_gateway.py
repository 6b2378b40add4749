"""Gateway costs, each against a reference measured in the same run.

- Delivery latency: `POST /channels/{id}/messages` → `message.new` on each of 100 and 1000
  sockets of one `voicechat serve` process, against a bare Valkey publish → subscribe round
  trip (the hop every event takes between instances). The benchmark's own timing is one
  round (POST until the last socket has the event); `extra_info` holds the per-delivery p50
  and p99 and the POST's own time.
- Idle sockets: how many authenticated, idle sockets one instance holds, and the server's
  resident memory per socket.

The clients run in this process, on one event loop: with 1000 sockets their own parsing adds
to the figures, which are therefore upper bounds.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import LiveServer, live_server_factory  # noqa: F401  (fixture)
from tests.utils.auth import bearer, register
from tests.utils.net import free_port, wait_for_health

ROUNDS = 30
USERS = 10
UNCAPPED = {
    "VOICECHAT_GATEWAY_MAX_SOCKETS_PER_USER": "10000",
    "VOICECHAT_GATEWAY_MAX_SOCKETS_PER_IP": "1000000",
    "VOICECHAT_RATE_LIMIT_GATEWAY_IP": "1000000/minute",
    "VOICECHAT_RATE_LIMIT_GATEWAY_USER": "1000000/minute",
}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


@pytest.fixture
def server(
    live_server_factory: Callable[..., LiveServer],  # noqa: F811
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> LiveServer:
    return live_server_factory(
        {
            "VOICECHAT_DATABASE_URL": database_url,
            "VOICECHAT_VALKEY_URL": clean_valkey,
            "VOICECHAT_DATA_DIR": str(tmp_path / "bench-data"),
            "VOICECHAT_LOG_LEVEL": "warning",
            # The fleets are few users on one address: the caps on sockets measure elsewhere
            # (tests/robustness/test_storm.py), not here.
            **UNCAPPED,
        }
    )


# The sandbox's hard RLIMIT_NOFILE is 20,000 and cannot be raised: server and client each
# hold one descriptor per socket, so 19,000 leaves room for everything else they open.
IDLE_SOCKETS = int(os.environ.get("VOICECHAT_BENCH_IDLE_SOCKETS", "19000"))
WS_IMPLEMENTATIONS = ["websockets-sansio", "websockets", "wsproto"]


@pytest.fixture
def ws_server(
    request: pytest.FixtureRequest,
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> Iterator[LiveServer]:
    """`benches.gateway_server` (serve's uvicorn options) with the parametrized ws library."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = free_port()
    log_path = tmp_path / "ws-server.log"
    env = {
        **os.environ,
        "VOICECHAT_PORT": str(port),
        "VOICECHAT_DATABASE_URL": database_url,
        "VOICECHAT_VALKEY_URL": clean_valkey,
        "VOICECHAT_DATA_DIR": str(tmp_path / "bench-data"),
        "VOICECHAT_LOG_LEVEL": "warning",
        "VOICECHAT_LOG_FORMAT": "json",
        "VOICECHAT_RATE_LIMIT_REGISTER_IP": "1000/hour",
        "VOICECHAT_MEDIA_PORT": "0",
        **UNCAPPED,
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603  (our own module, a fixed argument)
            [sys.executable, "-m", "benches.gateway_server", request.param],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = LiveServer(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_for_health(server.base_url, timeout=90)
        yield server
    finally:
        server.stop()


class Fleet:
    """Many authenticated sockets, each recording when it saw each marked message."""

    def __init__(self) -> None:
        self.sockets: list[ClientConnection] = []
        self.arrivals: dict[str, list[float]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.all_arrived = asyncio.Event()
        self.expected = 0

    async def open(self, ws_url: str, tokens: list[str], count: int) -> None:
        for i in range(count):
            ws = await connect(ws_url, max_size=None)
            await ws.send(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "auth",
                        "params": {"token": tokens[i % len(tokens)]},
                    }
                )
            )
            while '"id":1' not in str(await ws.recv()):
                pass
            self.sockets.append(ws)
            self.tasks.append(asyncio.create_task(self._read(ws)))

    async def _read(self, ws: ClientConnection) -> None:
        async for frame in ws:
            if '"message.new"' in str(frame):
                content = json.loads(frame)["params"]["content"]
                arrivals = self.arrivals.setdefault(content, [])
                arrivals.append(time.perf_counter())
                if len(arrivals) >= self.expected:
                    self.all_arrived.set()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)


async def _setup(server: LiveServer, http: httpx.AsyncClient) -> tuple[list[str], str]:
    tokens = [(await register(http, f"bench{i}"))["access_token"] for i in range(USERS)]
    response = await http.post(
        "/channels", json={"name": "bench", "type": "text"}, headers=bearer(tokens[0])
    )
    assert response.status_code == 201, response.text
    return tokens, str(response.json()["id"])


@pytest.mark.parametrize("sockets", [100, 1000])
@pytest.mark.benchmark(group="gateway-delivery")
def test_message_new_delivery(
    benchmark: Any, server: LiveServer, loop: asyncio.AbstractEventLoop, sockets: int
) -> None:
    _delivery(benchmark, server, loop, sockets)


@pytest.mark.parametrize("ws_server", WS_IMPLEMENTATIONS, indirect=True)
@pytest.mark.benchmark(group="gateway-delivery-by-ws")
def test_message_new_delivery_by_ws_implementation(
    benchmark: Any, ws_server: LiveServer, loop: asyncio.AbstractEventLoop
) -> None:
    _delivery(benchmark, ws_server, loop, 1000)


def _delivery(
    benchmark: Any, server: LiveServer, loop: asyncio.AbstractEventLoop, sockets: int
) -> None:
    ws_url = server.base_url.replace("http://", "ws://") + "/ws"
    http = httpx.AsyncClient(base_url=server.base_url, timeout=30)
    fleet = Fleet()
    tokens, channel_id = loop.run_until_complete(_setup(server, http))
    loop.run_until_complete(fleet.open(ws_url, tokens, sockets))
    deliveries: list[float] = []
    posts: list[float] = []
    counter = iter(range(10**9))

    async def one_round() -> None:
        marker = f"bench-{next(counter)}"
        fleet.expected = sockets
        fleet.all_arrived.clear()
        started = time.perf_counter()
        response = await http.post(
            f"/channels/{channel_id}/messages",
            json={"content": marker},
            headers=bearer(tokens[0]),
        )
        posts.append(time.perf_counter() - started)
        assert response.status_code == 201
        async with asyncio.timeout(30):
            await fleet.all_arrived.wait()
        deliveries.extend(t - started for t in fleet.arrivals.pop(marker))

    for _ in range(3):  # warm-up: connections, caches
        loop.run_until_complete(one_round())
    deliveries.clear()
    posts.clear()
    benchmark.pedantic(lambda: loop.run_until_complete(one_round()), rounds=ROUNDS, iterations=1)
    benchmark.extra_info.update(
        {
            "sockets": sockets,
            "delivery_p50_ms": round(_pct(deliveries, 0.50) * 1000, 2),
            "delivery_p99_ms": round(_pct(deliveries, 0.99) * 1000, 2),
            "post_p50_ms": round(statistics.median(posts) * 1000, 2),
        }
    )
    print(f"\n{sockets} sockets: {benchmark.extra_info}")
    loop.run_until_complete(fleet.close())
    loop.run_until_complete(http.aclose())


@pytest.mark.benchmark(group="gateway-delivery")
def test_reference_valkey_publish_subscribe(
    benchmark: Any, clean_valkey: str, loop: asyncio.AbstractEventLoop
) -> None:
    publisher = Redis.from_url(clean_valkey)
    subscriber = Redis.from_url(clean_valkey)
    pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
    loop.run_until_complete(pubsub.subscribe("bench"))
    trips: list[float] = []

    async def one_trip() -> None:
        started = time.perf_counter()
        await publisher.publish("bench", b"x" * 300)
        while await pubsub.get_message(ignore_subscribe_messages=True, timeout=5) is None:
            pass
        trips.append(time.perf_counter() - started)

    for _ in range(20):
        loop.run_until_complete(one_trip())
    trips.clear()
    benchmark.pedantic(lambda: loop.run_until_complete(one_trip()), rounds=300, iterations=1)
    benchmark.extra_info.update(
        {
            "p50_ms": round(_pct(trips, 0.50) * 1000, 3),
            "p99_ms": round(_pct(trips, 0.99) * 1000, 3),
        }
    )
    print(f"\nvalkey publish→subscribe: {benchmark.extra_info}")
    loop.run_until_complete(pubsub.aclose())
    loop.run_until_complete(publisher.aclose())
    loop.run_until_complete(subscriber.aclose())


async def _open_many(fleet: Fleet, ws_url: str, tokens: list[str], count: int) -> None:
    gate = asyncio.Semaphore(100)

    async def one(i: int) -> None:
        async with gate:
            await fleet.open(ws_url, [tokens[i % len(tokens)]], 1)

    await asyncio.gather(*(one(i) for i in range(count)))


@pytest.mark.parametrize("ws_server", WS_IMPLEMENTATIONS, indirect=True)
@pytest.mark.benchmark(group="gateway-idle")
def test_idle_sockets_and_memory(
    benchmark: Any, ws_server: LiveServer, loop: asyncio.AbstractEventLoop
) -> None:
    server = ws_server
    ws_url = server.base_url.replace("http://", "ws://") + "/ws"
    http = httpx.AsyncClient(base_url=server.base_url, timeout=30)
    process = psutil.Process(server.process.pid)
    # A user holds at most 10,000 sockets (the setting's ceiling): one user per 5,000.
    tokens = [
        loop.run_until_complete(register(http, f"idle{i}"))["access_token"]
        for i in range(IDLE_SOCKETS // 5000 + 1)
    ]
    token = tokens[0]
    fleet = Fleet()
    loop.run_until_complete(fleet.open(ws_url, [token], 20))
    before = process.memory_info().rss
    started = time.perf_counter()
    loop.run_until_complete(_open_many(fleet, ws_url, tokens, IDLE_SOCKETS))
    opened = time.perf_counter() - started
    loop.run_until_complete(asyncio.sleep(2))
    after = process.memory_info().rss

    probe = loop.run_until_complete(connect(ws_url))
    loop.run_until_complete(
        probe.send(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "auth", "params": {"token": token}})
        )
    )

    async def ping() -> None:
        await probe.send('{"jsonrpc":"2.0","id":2,"method":"ping"}')
        while '"pong"' not in str(await probe.recv()):
            pass

    assert len(fleet.sockets) == IDLE_SOCKETS + 20
    # With every socket held, the instance still answers: a ping round trip.
    benchmark.pedantic(lambda: loop.run_until_complete(ping()), rounds=5, iterations=1)
    benchmark.extra_info.update(
        {
            "idle_sockets": len(fleet.sockets),
            "rss_before_mib": round(before / 2**20, 1),
            "rss_after_mib": round(after / 2**20, 1),
            "kib_per_socket": round((after - before) / IDLE_SOCKETS / 1024, 1),
            "open_rate_per_s": round(IDLE_SOCKETS / opened),
        }
    )
    print(f"\nidle sockets: {benchmark.extra_info}")
    loop.run_until_complete(probe.close())
    loop.run_until_complete(fleet.close())
    loop.run_until_complete(http.aclose())
