#!/usr/bin/env bash
# A long schemathesis run (every check but positive_data_acceptance, as the administrator, as an
# ordinary member and without credentials; phases examples, coverage, fuzzing and stateful)
# against a fresh `voicechat serve` with embedded PostgreSQL and Valkey, printing the totals:
# cases (per pass, phase and operation), 5xx, unanswered, schema violations, failed checks
# (docs/reliability.md, "Fuzzing").
# Usage: scripts/fuzz.sh [--max-examples N] [--seed S] [--lock FILE] [--report FILE.json]
#                        [--passes administrator,member,anonymous] [--phases coverage,fuzzing,...]
#                        [--max-response-time SECONDS] [--url http://host:port]
#   --max-examples: cases per operation and phase (default 250: ≈ 30,000 cases in all)
#   --lock: hold this lock file (flock) during each chunk (one pass's phase, ≤ ~2 min on 2 cores),
#           e.g. /tmp/voicechat-bench.lock on a machine shared with benchmarks
#   --max-response-time: an answer slower than this fails the run (default 5 s: a hang)
#   --url: fuzz a server that is already running instead (it must be empty: the first
#          registration becomes the administrator)
# Exit status 1 when anything was found. Takes ~7 minutes on a 2-core machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m tests.robustness.fuzzing "$@"
