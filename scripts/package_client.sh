#!/usr/bin/env bash
# Build the standalone desktop client with PyInstaller (one folder) and print its size.
#   scripts/package_client.sh            -> dist/voicechat-client/ and dist/voicechat-client-linux-x86_64.tar.gz
# The spec is kivy_client/packaging/voicechat-client.spec; docs/client.md ("Packaging") explains it.
# Needs the dev environment (`scripts/setup.sh dev`: the native module built in release mode).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || { echo "no .venv: run scripts/setup.sh dev first" >&2; exit 1; }
# PyInstaller and the client's GUI packages, at the versions pinned in constraints.txt.
PIP_CONSTRAINT="$ROOT/constraints.txt" "$PY" -m pip install -q "pyinstaller" "kivy" "segno"
# `strip=True` in the spec runs binutils' strip over every shared library (Kivy's are built
# with debug info).
command -v strip >/dev/null || { echo "strip (binutils) is needed" >&2; exit 1; }
rm -rf "$ROOT/build/voicechat-client" "$ROOT/dist/voicechat-client"
# Kivy would print its banner and write ~/.kivy while PyInstaller imports it for the hooks.
KIVY_NO_ARGS=1 KIVY_NO_CONSOLELOG=1 KIVY_NO_FILELOG=1 KIVY_HOME="$ROOT/build/kivy-home" \
  "$PY" -m PyInstaller --noconfirm --log-level WARN \
  --workpath "$ROOT/build" --distpath "$ROOT/dist" \
  "$ROOT/kivy_client/packaging/voicechat-client.spec"
ARCHIVE="$ROOT/dist/voicechat-client-linux-$(uname -m).tar.gz"
tar -C "$ROOT/dist" -czf "$ARCHIVE" voicechat-client
echo "folder:  $(du -sm "$ROOT/dist/voicechat-client" | cut -f1) MiB  dist/voicechat-client/ (run dist/voicechat-client/voicechat-client)"
echo "archive: $(du -sm "$ARCHIVE" | cut -f1) MiB  ${ARCHIVE#"$ROOT"/}"
