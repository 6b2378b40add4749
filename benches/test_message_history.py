"""History paging throughput: `GET /channels/{id}/messages?limit=50` on one uvicorn worker,
driven by wrk, against the same two SQL statements run bare through asyncpg at the same
concurrency, in the same run.

The ratio says what HTTP, auth, permission checks and JSON cost on top of the database work.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import time
from collections.abc import Callable

import asyncpg
import httpx

from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD
from voicechat.chat.permissions import SELECT_CHANNEL_ACCESS
from voicechat.db.pool import _init_connection
from voicechat.db.repositories.messages import SELECT_PAGE_NEWEST_FIRST

CONNECTIONS = 16
SECONDS = 8
MESSAGES = 200


def _seed(base_url: str) -> tuple[str, str, str]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        tokens = http.post(
            "/auth/register", json={"username": "reader", "password": DEFAULT_PASSWORD}
        ).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        channel = http.post(
            "/channels", json={"name": "history", "type": "text"}, headers=headers
        ).json()
        for i in range(MESSAGES):
            http.post(
                f"/channels/{channel['id']}/messages",
                json={"content": f"message number {i} " + "x" * 80},
                headers=headers,
            )
        return tokens["access_token"], tokens["user"]["id"], channel["id"]


def _wrk(url: str, token: str) -> dict[str, float]:
    result = subprocess.run(  # noqa: S603 (fixed argv, our own URL)
        [  # noqa: S607 (wrk from PATH, installed by scripts/bench.sh)
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{SECONDS}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    text = result.stdout

    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", text, re.MULTILINE)
        assert match, text
        value, unit = float(match[1]), match[2]
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1])  # type: ignore[index]
    assert "Non-2xx" not in text, text
    return {"rps": rps, "p50_ms": latency("50"), "p99_ms": latency("99")}


async def _bare_sql(dsn: str, user_id: str, channel_id: str) -> dict[str, float]:
    pool = await asyncpg.create_pool(
        dsn, min_size=CONNECTIONS, max_size=CONNECTIONS, init=_init_connection
    )
    assert pool is not None
    latencies: list[float] = []
    deadline = time.perf_counter() + SECONDS

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with pool.acquire() as conn:
                await conn.fetchrow(SELECT_CHANNEL_ACCESS, channel_id, user_id)
                await conn.fetch(SELECT_PAGE_NEWEST_FIRST, channel_id, None, None, 51)
            latencies.append((time.perf_counter() - started) * 1000)

    try:
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    finally:
        await pool.close()
    latencies.sort()
    return {
        "rps": len(latencies) / SECONDS,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99)],
    }


def test_history_page_throughput(
    live_server: LiveServer, database_url: str, benchmark: Callable[..., object]
) -> None:
    token, user_id, channel_id = _seed(live_server.base_url)
    url = f"{live_server.base_url}/channels/{channel_id}/messages?limit=50"
    api = _wrk(url, token)
    floor = asyncio.run(_bare_sql(database_url, user_id, channel_id))
    ratio = api["rps"] / floor["rps"]
    print(
        f"\nGET messages?limit=50, one worker, {CONNECTIONS} connections, {SECONDS}s each\n"
        f"  API (wrk):        {api['rps']:8.0f} req/s  p50 {api['p50_ms']:6.2f} ms  "
        f"p99 {api['p99_ms']:6.2f} ms\n"
        f"  bare asyncpg SQL: {floor['rps']:8.0f} q/s    p50 {floor['p50_ms']:6.2f} ms  "
        f"p99 {floor['p99_ms']:6.2f} ms\n"
        f"  API / bare SQL:   {ratio:.2f}"
    )
    benchmark.extra_info.update(  # type: ignore[attr-defined]
        {"api": api, "bare_sql": floor, "ratio": ratio}
    )
    benchmark.pedantic(lambda: None, rounds=1)  # type: ignore[attr-defined]
    assert api["rps"] > 0
