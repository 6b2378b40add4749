#!/usr/bin/env bash
# Command two: install what the tests need, then run every check and the whole test suite.
# PostgreSQL and Valkey for the tests are real servers (the embedded ones voicechat ships),
# started by the pytest session fixtures in tests/conftest.py and stopped at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# System packages the test suite needs; installed only when missing.
# espeak-ng: speech for the DSP tests; cmake: builds the vendored libopus; libopus0: only for
# the opuslib reference in benches/ (voicechat itself links libopus statically).
# chromium: headless browser interop with the SFU (tests/voice/test_chromium.py).
# libportaudio2: sounddevice's PortAudio; pulseaudio, pulseaudio-utils: a private PulseAudio
# daemon with null sinks as sound cards for the client audio tests (tests/pulse.py).
# xvfb, xauth, libgl1-mesa-dri, libmtdev1, xclip: the Kivy client's window under a virtual X
# display with software OpenGL, and its clipboard (tests/gui).
APT_PACKAGES=(ca-certificates procps espeak-ng cmake libopus0 chromium libportaudio2 pulseaudio pulseaudio-utils xvfb xauth libgl1-mesa-dri libmtdev1 xclip)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

"$ROOT/scripts/setup.sh" dev
# Build-time Python for pyo3 in cargo commands: the venv's, so cargo does not rebuild pyo3.
export PYO3_PYTHON="$ROOT/.venv/bin/python"
PY="$ROOT/.venv/bin"

log "cargo fmt --check";     cargo fmt --all --check
log "cargo clippy";          cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test";            cargo test --workspace --locked
log "ruff";                  "$PY/ruff" check python tests benches examples kivy_client && "$PY/ruff" format --check python tests benches examples kivy_client
log "mypy";                  "$PY/mypy"
log "stubtest _native.pyi";  "$PY/python" -m mypy.stubtest voicechat._native
# Parallel workers (pytest-xdist), whole files per worker so module fixtures (an Xvfb display, an
# OIDC provider) start once; most tests wait on servers and sockets, so 3 workers keep 2 cores
# busy. Each worker starts its own PostgreSQL and Valkey (tests/conftest.py).
# VOICECHAT_TEST_WORKERS=0 runs everything in this process; later pytest arguments win.
log "pytest";                "$PY/pytest" -n "${VOICECHAT_TEST_WORKERS:-3}" --dist loadfile "$@"
