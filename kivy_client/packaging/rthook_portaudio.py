"""PyInstaller runtime hook: sounddevice finds PortAudio through `ctypes.util.find_library`,
which on Linux asks the system only. Prefer the system's library (it matches the system's ALSA
plugins and configuration) and fall back to the copy in the package."""

import ctypes.util
import os
import sys

_system_find_library = ctypes.util.find_library


def _find_library(name: str) -> str | None:
    found = _system_find_library(name)
    if found is None and name == "portaudio":
        bundled = os.path.join(getattr(sys, "_MEIPASS", ""), "libportaudio.so.2")
        if os.path.exists(bundled):
            return bundled
    return found


ctypes.util.find_library = _find_library
