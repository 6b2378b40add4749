#!/usr/bin/env bash
# A long schemathesis run (every check but positive_data_acceptance, as the administrator and
# without credentials) against a fresh `voicechat serve` with embedded PostgreSQL and Valkey,
# printing the totals: cases, 5xx, schema violations (docs/reliability.md, "Fuzzing").
# Usage: scripts/fuzz.sh [--max-examples N] [--seed S] [--url http://host:port]
#   --max-examples: cases per operation and phase (default 250: ≈ 20,000+ cases in all)
#   --url: fuzz a server that is already running instead (it must be empty: the first
#          registration becomes the administrator)
# Exit status 1 when anything was found. Takes a few minutes on a 2-core machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m tests.robustness.fuzzing "$@"
