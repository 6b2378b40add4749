#!/usr/bin/env bash
# Run the benchmark suite (not part of the pass/fail tests); extra args go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/setup.sh" dev
exec "$ROOT/.venv/bin/pytest" benches -p no:cacheprovider --benchmark-only \
  --benchmark-columns=min,median,mean,ops,rounds --benchmark-sort=name "$@"
