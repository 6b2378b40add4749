"""Structured logging: JSON lines when stderr is not a terminal, each carrying the request id."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


class _RequestIdFilter(logging.Filter):
    """Stamps every record with the id of the request being served (or `-`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        # uvicorn attaches an ANSI-coloured copy of its message; the plain one is enough.
        record.__dict__.pop("color_message", None)
        return True


class _ClientFaultFilter(logging.Filter):
    """Demotes uvicorn's report of a client's fault to one WARNING line without a traceback.

    uvicorn logs a WebSocket text frame that is not UTF-8 with `logger.exception` (an ERROR
    and a traceback) although nothing failed on the server: the socket is closed with 1007
    (docs/gateway.md) and the server goes on.
    """

    MESSAGES = frozenset({"Invalid UTF-8 sequence received from client."})

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in self.MESSAGES:
            record.levelno = logging.WARNING
            record.levelname = logging.getLevelName(logging.WARNING)
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_client_faults() -> None:
    """Install :class:`_ClientFaultFilter` on uvicorn's logger (once; the app does it)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _ClientFaultFilter) for f in logger.filters):
        logger.addFilter(_ClientFaultFilter())


def configure_logging(level: str = "info", fmt: Literal["auto", "json", "text"] = "auto") -> None:
    """Send voicechat's and uvicorn's logs to stderr in one format.

    Args:
        level: the minimum level name.
        fmt: `json`, `text`, or `auto` (JSON unless stderr is a terminal).
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if use_json:
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}{request_id}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own handlers would print a second, unstructured copy; the access log is ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers[:] = []
        uv.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
