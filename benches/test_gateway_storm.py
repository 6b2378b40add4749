"""The reconnect storm of issue 13 at full size: 2,000 sockets (200 users x 10, each user
behind its own address as the trusted proxy reports it) reconnecting at once after a restart
of one `voicechat serve`, while another user's HTTP requests run.

The same code as `tests/robustness/test_storm.py` (which runs 500 sockets in CI), with the
same assertions: every socket gets in, the only close is the restart's 1012, every HTTP
request answers 200. The benchmark's figure is the whole run; `extra_info` has the time from
the first reconnect to the last socket admitted, the first connection of all 2,000, and the
bystander's request latency during the reconnect against the same requests on a quiet server.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer
from tests.robustness.test_storm import reconnect_storm, server_env

USERS = 200
SOCKETS_PER_USER = 10


@pytest.mark.benchmark(group="gateway-storm")
def test_reconnect_storm_of_2000_sockets(
    benchmark: Any,
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> None:
    env = server_env(database_url, clean_valkey, tmp_path / "data")
    timings: dict[str, float] = {}

    def storm() -> None:
        timings.update(
            asyncio.run(
                reconnect_storm(
                    live_server_factory, env, users=USERS, sockets_per_user=SOCKETS_PER_USER
                )
            )
        )

    benchmark.pedantic(storm, rounds=1, iterations=1)
    benchmark.extra_info.update(
        {
            "sockets": USERS * SOCKETS_PER_USER,
            "connect_all_s": round(timings["connected_s"], 2),
            "reconnect_all_s": round(timings["reconnected_s"], 2),
            "bystander_requests": timings["http_requests"],
            "bystander_p50_ms": round(timings["http_p50_s"] * 1000, 1),
            "bystander_max_ms": round(timings["http_max_s"] * 1000, 1),
            "bystander_p99_ms": round(timings["http_p99_s"] * 1000, 1),
            "bystander_slowest_request": timings["http_slowest_at"],
            "quiet_p50_ms": round(timings["quiet_http_p50_s"] * 1000, 1),
            "load_average": os.getloadavg()[0],
        }
    )
    print(f"\nreconnect storm: {benchmark.extra_info}")
