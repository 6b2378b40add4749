"""Voice SFU load benchmark: `python -m benches.load [SCENARIO ...] [--rates 50,250]`."""

from __future__ import annotations

import argparse

from benches.load.common import HEADER, SCENARIOS, Result
from benches.load.janus import run_janus
from benches.load.targets import run_direct, run_relay, run_sfu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenarios", nargs="*", default=["10x10"], choices=sorted(SCENARIOS))
    parser.add_argument("--rates", default="50,250", help="packets/s per speaker, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--targets", default="direct,sfu,relay,janus")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    targets = args.targets.split(",")
    results: list[Result] = []
    for key in args.scenarios:
        scenario = SCENARIOS[key]
        if "sfu" in targets:
            results += run_sfu(scenario, rates, args.seconds)
        if "relay" in targets:
            results += run_relay(scenario, rates, args.seconds)
        if "janus" in targets:
            results += run_janus(scenario, rates, args.seconds)
    if "direct" in targets:
        results += run_direct(args.seconds)
    print(HEADER)
    for result in results:
        print(result.row())


if __name__ == "__main__":
    main()
