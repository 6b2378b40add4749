#!/usr/bin/env bash
# Command one: set up and run the server on embedded defaults.
# Extra arguments go to `voicechat serve` (e.g. --port 9000).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
exec "$ROOT/.venv/bin/voicechat" serve "$@"
