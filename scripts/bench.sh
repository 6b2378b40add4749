#!/usr/bin/env bash
# Run the benchmark suite (not part of the pass/fail tests); extra args go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# wrk drives the HTTP throughput benchmarks; libopus0 backs the opuslib reference; janus is the
# reference SFU of the voice load benchmark (benches/load); libportaudio2, pulseaudio and
# pulseaudio-utils are the client audio benchmark's sound devices (benches/test_client_audio.py);
# xvfb, libgl1-mesa-dri and libmtdev1 give the client resource benchmark its window
# (benches/test_client_resources.py), binutils the package's strip.
for pkg in wrk libopus0 janus libportaudio2 pulseaudio pulseaudio-utils xvfb libgl1-mesa-dri libmtdev1 binutils; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || {
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$pkg"
  }
done
"$ROOT/scripts/setup.sh" dev
# The bench-only native programs (benches/native, not in the wheel): the UDP relay floor of the
# voice load benchmark and the dsp_bench extension of the DSP benchmark. Incremental, so cheap
# when nothing changed; the bench entries would otherwise build them on first use.
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --locked -p udp_relay
VIRTUAL_ENV="$ROOT/.venv" "$ROOT/.venv/bin/maturin" develop --release --locked \
  -m benches/native/dsp_bench/Cargo.toml
exec "$ROOT/.venv/bin/pytest" benches -p no:cacheprovider --benchmark-only \
  --benchmark-columns=min,median,mean,ops,rounds --benchmark-sort=name "$@"
