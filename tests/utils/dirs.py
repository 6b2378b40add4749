"""Directories for servers started by tests."""

from __future__ import annotations

import tempfile
from pathlib import Path


def service_dir(prefix: str) -> Path:
    """A fresh directory under /tmp the embedded servers can use, also when we run as root.

    It is our own directory, so making it traversable (0711) loosens nothing that existed.
    """
    path = Path(tempfile.mkdtemp(prefix=f"voicechat-{prefix}-"))
    path.chmod(0o711)
    return path
