"""`voicechat serve`'s uvicorn with a chosen WebSocket implementation, for the gateway benches.

Run as `python -m benches.gateway_server <ws>` (`websockets`, `websockets-sansio`, `wsproto`)
with the VOICECHAT_* environment of a server whose PostgreSQL and Valkey already run. Every
other uvicorn option is the one `voicechat serve` passes, so only the implementation differs.
"""

from __future__ import annotations

import sys

import uvicorn

from voicechat.api import create_app
from voicechat.api.http_limits import uvicorn_options
from voicechat.gateway import MAX_FRAME_BYTES
from voicechat.logs import configure_logging
from voicechat.settings import Settings


def main() -> None:
    """Serve until SIGTERM."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        ws=sys.argv[1],
        ws_max_size=MAX_FRAME_BYTES,
        ws_per_message_deflate=False,
        **uvicorn_options(settings),
    )


if __name__ == "__main__":
    main()
