"""The one exception the embedded servers raise."""

from __future__ import annotations

from pathlib import Path


class EmbeddedError(Exception):
    """An embedded server could not be prepared, started or stopped.

    ``str(error)`` starts with a one-line message meant for an operator. When the server had
    written a log, the last lines of it follow on the next lines.

    Attributes:
        message: The one-line message, without the log tail.
        log_path: The log the tail was taken from, or None.
        log_tail: The last lines of that log, or "".
    """

    def __init__(self, message: str, *, log_path: Path | None = None, log_tail: str = "") -> None:
        self.message = message
        self.log_path = log_path
        self.log_tail = log_tail
        text = message
        if log_tail:
            text += f"\n--- last lines of {log_path} ---\n{log_tail}"
        super().__init__(text)
