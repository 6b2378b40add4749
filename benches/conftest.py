"""Benchmarks share the test fixtures (real PostgreSQL and Valkey, live servers) and report
ratios.

Run with `scripts/bench.sh`. Absolute times drift on shared machines, so every benchmark is
paired with a reference measured in the same run; compare the pair, not the numbers.
"""

pytest_plugins = ["tests.conftest"]
