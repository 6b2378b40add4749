"""Auth costs, each against a reference measured in the same run.

- Login throughput on one worker (one event loop, in-process ASGI) against raw argon2-cffi
  verifications per second with the same parameters: how close login gets to the floor the
  password hash sets.
- Authenticating a request: the same tiny route with and without `CurrentUser`
  (benches/auth_server.py), as a ratio: in-process (one request at a time through the ASGI
  app) and over TCP against a live server driven by wrk with 16 connections, the two routes
  alternated in rounds so both see the same machine.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from benches.auth_server import probed_app
from benches.harness import Harness
from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD, bearer
from tests.utils.net import free_port, wait_for_health
from voicechat.auth.passwords import MEMORY_KIB, PARALLELISM, TIME_COST
from voicechat.settings import Settings

LOGINS_PER_ROUND = 8
CONNECTIONS = 16
SECONDS_PER_RUN = 4
ROUNDS = 3
PAIRED_ROUNDS = 15
PAIRED_BLOCK = 200


@pytest.fixture
def harness(settings: Settings) -> Iterator[Harness]:
    # Limits off the critical path: the benchmark measures work, not refusals.
    app = probed_app(
        settings.model_copy(
            update={"rate_limit_login": "100000/minute", "rate_limit_login_ip": "100000/minute"}
        )
    )
    h = Harness(app)
    response = h.run(
        h.client.post("/auth/register", json={"username": "bench", "password": DEFAULT_PASSWORD})
    )
    assert response.status_code == 201
    h.token = response.json()["access_token"]  # type: ignore[attr-defined]
    yield h
    h.close()


@pytest.mark.benchmark(group="login-throughput")
def test_login_round_of_concurrent_logins(benchmark, harness: Harness) -> None:  # type: ignore[no-untyped-def]
    async def round_of_logins() -> list[int]:
        responses = await asyncio.gather(
            *(
                harness.client.post(
                    "/auth/login", json={"username": "bench", "password": DEFAULT_PASSWORD}
                )
                for _ in range(LOGINS_PER_ROUND)
            )
        )
        return [r.status_code for r in responses]

    statuses = benchmark.pedantic(lambda: harness.run(round_of_logins()), rounds=5, warmup_rounds=1)
    assert statuses == [200] * LOGINS_PER_ROUND
    benchmark.extra_info["logins_per_round"] = LOGINS_PER_ROUND


@pytest.mark.benchmark(group="login-throughput")
def test_reference_raw_argon2_verifications(benchmark) -> None:  # type: ignore[no-untyped-def]
    hasher = PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_KIB, parallelism=PARALLELISM)
    stored = hasher.hash(DEFAULT_PASSWORD)

    def round_of_verifications() -> None:
        for _ in range(LOGINS_PER_ROUND):
            hasher.verify(stored, DEFAULT_PASSWORD)

    benchmark.pedantic(round_of_verifications, rounds=5, warmup_rounds=1)
    benchmark.extra_info["logins_per_round"] = LOGINS_PER_ROUND


@pytest.mark.benchmark(group="token-verification")
def test_authenticated_request(benchmark, harness: Harness) -> None:  # type: ignore[no-untyped-def]
    headers = bearer(harness.token)  # type: ignore[attr-defined]
    response = benchmark(
        lambda: harness.run(harness.client.get("/_bench/authenticated", headers=headers))
    )
    assert response.status_code == 200


@pytest.mark.benchmark(group="token-verification")
def test_reference_unauthenticated_request(benchmark, harness: Harness) -> None:  # type: ignore[no-untyped-def]
    response = benchmark(lambda: harness.run(harness.client.get("/_bench/anonymous")))
    assert response.status_code == 200


@pytest.mark.benchmark(group="token-verification-paired")
def test_authenticated_over_unauthenticated_paired(benchmark: Any, harness: Harness) -> None:
    # The two routes in alternating blocks, so that a busy neighbour slows both alike: the
    # pytest-benchmark pair above runs one after the other and drifts on a shared machine.
    headers = bearer(harness.token)  # type: ignore[attr-defined]

    async def block(path: str, **kwargs: Any) -> float:
        started = time.perf_counter()
        for _ in range(PAIRED_BLOCK):
            response = await harness.client.get(path, **kwargs)
        assert response.status_code == 200
        return (time.perf_counter() - started) / PAIRED_BLOCK * 1e6

    harness.run(block("/_bench/authenticated", headers=headers))  # warm both
    harness.run(block("/_bench/anonymous"))
    anonymous, authenticated = [], []
    for _ in range(PAIRED_ROUNDS):
        anonymous.append(harness.run(block("/_bench/anonymous")))
        authenticated.append(harness.run(block("/_bench/authenticated", headers=headers)))
    figures = {
        "anonymous_us": statistics.median(anonymous),
        "authenticated_us": statistics.median(authenticated),
        "ratio": statistics.median(a / b for a, b in zip(authenticated, anonymous, strict=True)),
        "load": os.getloadavg()[0],
    }
    print(
        f"\nin-process, {PAIRED_ROUNDS} alternating blocks of {PAIRED_BLOCK} requests, "
        f"load average {figures['load']:.2f}\n"
        f"  anonymous      {figures['anonymous_us']:7.0f} us per request (median block)\n"
        f"  authenticated  {figures['authenticated_us']:7.0f} us per request (median block)\n"
        f"  ratio (median of the blocks' ratios): {figures['ratio']:.2f}"
    )
    benchmark.extra_info.update(figures)
    benchmark.pedantic(lambda: None, rounds=1)


@pytest.fixture(params=[1, 2], ids=lambda n: f"{n}-workers")
def probe_server(
    request: pytest.FixtureRequest, database_url: str, clean_valkey: str, tmp_path: Path
) -> Iterator[LiveServer]:
    """`benches.auth_server`: serve's uvicorn options and the probe routes, 1 or 2 workers."""
    port = free_port()
    log_path = tmp_path / "auth-server.log"
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
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603  (our own module, a fixed argument)
            [sys.executable, "-m", "benches.auth_server", str(request.param)],
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


def _wrk(url: str, headers: dict[str, str]) -> dict[str, float]:
    header_args = [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    result = subprocess.run(  # noqa: S603 (fixed argv, our own URL)
        [  # noqa: S607 (wrk from PATH, installed by scripts/bench.sh)
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{SECONDS_PER_RUN}s",
            "--latency",
            *header_args,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    text = result.stdout
    assert "Non-2xx" not in text, text

    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", text, re.MULTILINE)
        assert match, text
        value, unit = float(match[1]), match[2]
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    assert rps, text
    return {"rps": float(rps[1]), "p50_ms": latency("50"), "p99_ms": latency("99")}


@pytest.mark.benchmark(group="token-verification-live")
def test_authenticated_request_under_load(benchmark: Any, probe_server: LiveServer) -> None:
    with httpx.Client(base_url=probe_server.base_url, timeout=30) as http:
        response = http.post(
            "/auth/register", json={"username": "bench", "password": DEFAULT_PASSWORD}
        )
        assert response.status_code == 201, response.text
        token = response.json()["access_token"]
    base = probe_server.base_url
    runs: dict[str, list[dict[str, float]]] = {"anonymous": [], "authenticated": []}
    for _ in range(ROUNDS):
        runs["anonymous"].append(_wrk(f"{base}/_bench/anonymous", {}))
        runs["authenticated"].append(_wrk(f"{base}/_bench/authenticated", bearer(token)))
    median = {
        route: {key: statistics.median(run[key] for run in each) for key in each[0]}
        for route, each in runs.items()
    }
    ratio = median["anonymous"]["rps"] / median["authenticated"]["rps"]
    load = os.getloadavg()[0]
    workers = str(probe_server.process.args[-1])  # type: ignore[index]
    lines = [
        f"\n/_bench routes, {workers} worker(s), wrk {CONNECTIONS} connections, "
        f"{ROUNDS} x {SECONDS_PER_RUN}s each, load average {load:.2f}"
    ]
    for route, figures in median.items():
        lines.append(
            f"  {route:14} {figures['rps']:8.0f} req/s  p50 {figures['p50_ms']:6.2f} ms  "
            f"p99 {figures['p99_ms']:6.2f} ms   runs: "
            + ", ".join(f"{run['rps']:.0f}" for run in runs[route])
        )
    lines.append(f"  cost ratio (anonymous req/s / authenticated req/s): {ratio:.2f}")
    print("\n".join(lines))
    benchmark.extra_info.update({"median": median, "ratio": ratio, "load": load})
    benchmark.pedantic(lambda: None, rounds=1)
    assert median["authenticated"]["rps"] > 0
