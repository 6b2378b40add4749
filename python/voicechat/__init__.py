"""voicechat: a self-hosted voice and text chat platform.

The server, SDK, CLI and ops tools live in the submodules. `voicechat._native` is the Rust
extension module (audio DSP and the SFU media plane); importing this package checks that it
was built from the same version as the Python code, and loads nothing else.
"""

import importlib.metadata

__all__ = ["__version__"]

_REBUILD = "rebuild with `maturin develop --release`"

try:
    __version__: str = importlib.metadata.version("voicechat")
except importlib.metadata.PackageNotFoundError as exc:
    raise ImportError(f"voicechat is not installed: {_REBUILD} or `pip install -e .`") from exc

try:
    from voicechat import _native
except ImportError as exc:
    raise ImportError(f"voicechat._native failed to import ({exc}): {_REBUILD}") from exc

# Without the compiled file, `voicechat/_native/` (type stubs only) imports as an empty
# namespace package, so a missing build shows up here as a missing __version__.
_native_version: str | None = getattr(_native, "__version__", None)
if _native_version is None:
    raise ImportError(f"voicechat._native is not built (only its stubs were found): {_REBUILD}")
if _native_version != __version__:
    raise ImportError(
        f"native module is version {_native_version}, package is {__version__}: {_REBUILD}"
    )
del _native_version
