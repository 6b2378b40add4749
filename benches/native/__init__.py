"""The bench-only native programs, workspace crates that never ship in the voicechat wheel.

- `udp_relay/`: the bare UDP relay, the floor of the voice SFU load benchmark (`benches/load`);
- `dsp_bench/`: the Python extension `dsp_bench`, audio_dsp's per-frame work timed inside Rust
  (the `native` rows of `benches/test_dsp.py`).

`scripts/bench.sh` builds both up front. Any other bench entry (`python -m benches.load`,
`pytest benches/...`) builds what it needs on first use, from a clean clone: cargo for the relay,
the dev venv's maturin for the extension (installed into the running venv).
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RELAY_BINARY = ROOT / "target" / "release" / "udp_relay"
RELAY_BUILD = ["cargo", "build", "--release", "--locked", "-p", "udp_relay"]
DSP_BENCH_BUILD = [
    "maturin",
    "develop",
    "--release",
    "--locked",
    "-m",
    str((HERE / "dsp_bench" / "Cargo.toml").relative_to(ROOT)),
]


class NotBuilt(RuntimeError):
    """A bench program is missing and cannot be built here; the message says what to run."""


def _tool(name: str) -> str:
    """`name` from the running venv's bin directory, else from PATH (or ~/.cargo/bin)."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name) or shutil.which(name, path=str(Path.home() / ".cargo" / "bin"))
    if found is None:
        raise FileNotFoundError(name)
    return found


def _build(command: list[str]) -> None:
    try:
        tool = _tool(command[0])
    except FileNotFoundError:
        raise NotBuilt(f"{command[0]} not found: run `{' '.join(command)}` from {ROOT}") from None
    # maturin installs into the venv VIRTUAL_ENV names: the one running the benches.
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix}
    print(f"building: {' '.join(command)}", file=sys.stderr)
    subprocess.run([tool, *command[1:]], cwd=ROOT, env=env, check=True)  # noqa: S603


def relay_binary() -> Path:
    """The path of the `udp_relay` binary, built first if it is missing.

    Raises:
        NotBuilt: It is missing and cargo is not installed.
    """
    if not RELAY_BINARY.exists():
        _build(RELAY_BUILD)
    return RELAY_BINARY


def dsp_bench() -> ModuleType:
    """The `dsp_bench` extension module, built and installed into this venv if missing.

    Raises:
        NotBuilt: It is missing and maturin is not installed.
    """
    try:
        return importlib.import_module("dsp_bench")
    except ImportError:
        _build(DSP_BENCH_BUILD)
        importlib.invalidate_caches()
        return importlib.import_module("dsp_bench")
