"""Voice SFU load (issue 6): our SFU, Janus VideoRoom and a bare UDP relay under the same load.

The work is in `benches/load` (run it directly with `python -m benches.load`; see
docs/performance.md, "Voice SFU load"). This entry runs the 10-rooms-of-10 scenario once at
the real-time rate (50 packets/s per speaker) and once at 5x, and puts every figure in
pytest-benchmark's `extra_info`; the timed quantity is the whole run. Targets that are not
installed skip the run: Debian's `janus` (scripts/bench.sh installs it) and the relay binary,
which this entry builds (`benches.native.relay_binary`) when cargo is there.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from benches.load.common import HEADER, SCENARIOS, Result
from benches.load.janus import run_janus
from benches.load.targets import run_direct, run_relay, run_sfu
from benches.native import NotBuilt, relay_binary

RATES = (50, 250)
SECONDS = 5.0


def _record(benchmark: Any, results: list[Result]) -> None:
    print()
    print(HEADER)
    for result in results:
        print(result.row())
        benchmark.extra_info[f"{result.target} @ {result.rate}"] = {
            "forwarded_pps": round(result.forwarded_pps, 1),
            "pps_per_core": round(result.pps_per_core, 1),
            "cpu_us_per_packet": round(result.cpu_us_per_packet, 2),
            "latency_p50_ms": round(result.latency_ms(0.5), 2),
            "latency_p99_ms": round(result.latency_ms(0.99), 2),
            "rss_kib_per_participant": round(result.rss_per_participant / 1024, 1),
        }


def test_sfu_load(benchmark: Any) -> None:
    scenario = SCENARIOS["10x10"]
    missing = []
    try:
        relay_binary()
    except NotBuilt as err:
        missing.append(f"udp_relay ({err})")
    if shutil.which("janus") is None:
        missing.append("janus (apt-get install janus)")
    if missing:
        pytest.skip("not installed: " + ", ".join(missing))

    def run() -> list[Result]:
        return (
            run_direct(SECONDS)
            + run_sfu(scenario, RATES, SECONDS)
            + run_relay(scenario, RATES, SECONDS)
            + run_janus(scenario, RATES, SECONDS)
        )

    results = benchmark.pedantic(run, rounds=1, iterations=1)
    _record(benchmark, results)
