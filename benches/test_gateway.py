"""Gateway costs, each against a reference measured in the same run.

- Delivery latency: `POST /channels/{id}/messages` → `message.new` on each of 100 and 1000
  sockets of one `voicechat serve` process (one worker), against a bare Valkey publish →
  subscribe round trip (the hop every event takes between instances). The benchmark's own
  timing is one round (POST until the last socket has the event); `extra_info` holds the
  per-delivery p50 and p99 and the POST's own time. Also per WebSocket implementation.
- Idle sockets: how many authenticated, idle sockets one instance holds (20,000 asked, as
  many as its descriptor ceiling allows), and the server's resident memory per socket.

The sockets' clients run in processes of their own (benches/gateway_fleet.py: raw-protocol
clients, `CLIENT_PROCESSES` of them), not on this process's event loop, so the figures are
the server's; a delivery is stamped when its bytes reach the client process. Server and
clients still share the machine's two cores.
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
from websockets.asyncio.client import connect

from benches.gateway_fleet import ProcessFleet
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
            # One instance: one API process (serve would start one per core).
            "VOICECHAT_WORKERS": "1",
            # The fleets are few users on one address: the caps on sockets measure elsewhere
            # (tests/robustness/test_storm.py), not here.
            **UNCAPPED,
        }
    )


# Asked for 20,000; the server's descriptor ceiling may allow fewer (the test says how many).
IDLE_SOCKETS = int(os.environ.get("VOICECHAT_BENCH_IDLE_SOCKETS", "20000"))
FD_MARGIN = 24
# `serve` is the protocol `voicechat serve` runs (wsproto's, with pre-encoded fan-out frames).
WS_IMPLEMENTATIONS = ["serve", "websockets-sansio", "wsproto"]
IDLE_WS_IMPLEMENTATIONS = ["serve", "websockets-sansio"]
# The sockets' clients run in this many processes of their own (benches/gateway_fleet.py).
CLIENT_PROCESSES = int(os.environ.get("VOICECHAT_BENCH_CLIENT_PROCESSES", "2"))


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
        "VOICECHAT_REGISTRATION": "open",
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
    tokens, channel_id = loop.run_until_complete(_setup(server, http))
    fleet = ProcessFleet(ws_url, tokens, sockets, CLIENT_PROCESSES)
    assert loop.run_until_complete(fleet.ready()) == sockets
    deliveries: list[float] = []
    posts: list[float] = []
    counter = iter(range(10**9))

    async def one_round() -> None:
        marker = f"bench-{next(counter)}"
        started = time.perf_counter()
        response = await http.post(
            f"/channels/{channel_id}/messages",
            json={"content": marker},
            headers=bearer(tokens[0]),
        )
        posts.append(time.perf_counter() - started)
        assert response.status_code == 201
        arrivals = await fleet.arrivals(marker)
        assert len(arrivals) == sockets
        deliveries.extend(t - started for t in arrivals)

    for _ in range(3):  # warm-up: connections, caches
        loop.run_until_complete(one_round())
    deliveries.clear()
    posts.clear()
    benchmark.pedantic(lambda: loop.run_until_complete(one_round()), rounds=ROUNDS, iterations=1)
    benchmark.extra_info.update(
        {
            "sockets": sockets,
            "client_processes": CLIENT_PROCESSES,
            "delivery_p50_ms": round(_pct(deliveries, 0.50) * 1000, 2),
            "delivery_p99_ms": round(_pct(deliveries, 0.99) * 1000, 2),
            "delivery_max_ms": round(max(deliveries) * 1000, 2),
            "post_p50_ms": round(statistics.median(posts) * 1000, 2),
            "load_average": os.getloadavg()[0],
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


@pytest.mark.parametrize("ws_server", IDLE_WS_IMPLEMENTATIONS, indirect=True)
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
    warm = ProcessFleet(ws_url, [token], 20, 1)
    loop.run_until_complete(warm.ready())
    # One descriptor per socket: the server's ceiling (RLIMIT_NOFILE, which this sandbox does
    # not let even root raise past 20,000) less what it holds already, less a margin for the
    # probe and the connections its pools may still open.
    ceiling = process.rlimit(psutil.RLIMIT_NOFILE)[1]
    room = ceiling - process.num_fds() - FD_MARGIN
    count = min(IDLE_SOCKETS, room)
    before = process.memory_info().rss
    started = time.perf_counter()
    fleet = ProcessFleet(ws_url, tokens, count, -(-count // 10_000))
    assert loop.run_until_complete(fleet.ready()) == count
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

    # With every socket held, the instance still answers: a ping round trip.
    benchmark.pedantic(lambda: loop.run_until_complete(ping()), rounds=5, iterations=1)
    held, closed = loop.run_until_complete(fleet.stats())
    assert (held, closed) == (count, 0)
    benchmark.extra_info.update(
        {
            "idle_sockets": count + 20 + 1,
            "fd_ceiling": ceiling,
            "server_fds": process.num_fds(),
            "rss_before_mib": round(before / 2**20, 1),
            "rss_after_mib": round(after / 2**20, 1),
            "kib_per_socket": round((after - before) / count / 1024, 2),
            "open_rate_per_s": round(count / opened),
            "load_average": os.getloadavg()[0],
        }
    )
    print(f"\nidle sockets: {benchmark.extra_info}")
    loop.run_until_complete(probe.close())
    loop.run_until_complete(fleet.close())
    loop.run_until_complete(warm.close())
    loop.run_until_complete(http.aclose())


def _tree_rss(process: psutil.Process) -> int:
    return int(sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]))


@pytest.mark.benchmark(group="gateway-idle")
def test_idle_sockets_on_one_serve_with_two_workers(
    benchmark: Any,
    live_server_factory: Callable[..., LiveServer],  # noqa: F811
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
    loop: asyncio.AbstractEventLoop,
) -> None:
    """20,000 idle sockets on one `voicechat serve` (one port), its two API workers (one per
    core) sharing them: each worker process stays under the descriptor ceiling."""
    server = live_server_factory(
        {
            "VOICECHAT_DATABASE_URL": database_url,
            "VOICECHAT_VALKEY_URL": clean_valkey,
            "VOICECHAT_DATA_DIR": str(tmp_path / "bench-data"),
            "VOICECHAT_LOG_LEVEL": "warning",
            "VOICECHAT_WORKERS": "2",
            **UNCAPPED,
        }
    )
    ws_url = server.base_url.replace("http://", "ws://") + "/ws"
    http = httpx.AsyncClient(base_url=server.base_url, timeout=30)
    process = psutil.Process(server.process.pid)
    tokens = [
        loop.run_until_complete(register(http, f"idle{i}"))["access_token"]
        for i in range(IDLE_SOCKETS // 5000 + 1)
    ]
    warm = ProcessFleet(ws_url, [tokens[0]], 20, 1)
    loop.run_until_complete(warm.ready())
    before = _tree_rss(process)
    started = time.perf_counter()
    fleet = ProcessFleet(ws_url, tokens, IDLE_SOCKETS, -(-IDLE_SOCKETS // 8_000))
    assert loop.run_until_complete(fleet.ready()) == IDLE_SOCKETS
    opened = time.perf_counter() - started
    loop.run_until_complete(asyncio.sleep(2))
    after = _tree_rss(process)
    per_worker = sorted(p.num_fds() for p in process.children(recursive=True))

    async def health() -> None:
        assert (await http.get("/health")).status_code == 200

    # With every socket held, the instance still answers.
    benchmark.pedantic(lambda: loop.run_until_complete(health()), rounds=5, iterations=1)
    held, closed = loop.run_until_complete(fleet.stats())
    assert (held, closed) == (IDLE_SOCKETS, 0)
    benchmark.extra_info.update(
        {
            "idle_sockets": IDLE_SOCKETS + 20,
            "fds_per_process": per_worker,
            "rss_before_mib": round(before / 2**20, 1),
            "rss_after_mib": round(after / 2**20, 1),
            "kib_per_socket": round((after - before) / IDLE_SOCKETS / 1024, 2),
            "open_rate_per_s": round(IDLE_SOCKETS / opened),
            "load_average": os.getloadavg()[0],
        }
    )
    print(f"\nidle sockets, two workers: {benchmark.extra_info}")
    loop.run_until_complete(fleet.close())
    loop.run_until_complete(warm.close())
    loop.run_until_complete(http.aclose())
