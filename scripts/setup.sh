#!/usr/bin/env bash
# Create .venv and build voicechat with its native module in release mode.
# Usage: scripts/setup.sh [extras]   e.g. scripts/setup.sh dev
# Idempotent: a second run reuses the venv and cargo's incremental build in target/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
EXTRAS="${1:-}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

need_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  echo "voicechat needs Python 3.11 or newer" >&2; exit 1
}

if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "voicechat needs Rust (cargo): https://rustup.rs" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$(need_python)" -m venv .venv
fi

# Exact versions for every install, including maturin in pip's isolated build environment.
export PIP_CONSTRAINT="$ROOT/constraints.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -m pip install -q --upgrade pip

spec="."
[ -n "$EXTRAS" ] && spec=".[$EXTRAS]"
log "installing voicechat${EXTRAS:+ [$EXTRAS]} and building the native module (release)"
start=$(date +%s)
# Development and CI install editable (the source tree is the package); the Docker image
# installs a built wheel (VOICECHAT_INSTALL_MODE=wheel) so its venv stands alone.
editable="-e"
[ "${VOICECHAT_INSTALL_MODE:-editable}" = "wheel" ] && editable=""
.venv/bin/python -m pip install -q $editable "$spec"
log "built in $(( $(date +%s) - start ))s"
.venv/bin/python -c 'import voicechat, voicechat._native as n; assert n.__version__ == voicechat.__version__'
