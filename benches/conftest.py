"""Benchmarks share the test fixtures (real PostgreSQL and Valkey) and report ratios.

Run with `scripts/bench.sh`. Absolute times drift on shared machines, so every benchmark is
paired with a reference measured in the same run; compare the pair, not the numbers.
"""

from tests.conftest import (  # noqa: F401  (re-exported fixtures)
    clean_valkey,
    database_url,
    postgres_dsn,
    settings,
    settings_factory,
    template_database,
    valkey_url,
)
