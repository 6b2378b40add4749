"""`voicechat serve`'s uvicorn with a chosen WebSocket implementation, for the gateway benches.

Run as `python -m benches.gateway_server <ws>` (`serve`: the protocol `voicechat serve` runs,
`voicechat.gateway.WS_IMPLEMENTATION`; or one of uvicorn's own: `websockets`,
`websockets-sansio`, `wsproto`) with the VOICECHAT_* environment of a server whose PostgreSQL
and Valkey already run; VOICECHAT_BENCH_PROFILE=<file> writes a cProfile of the run there. Every
other uvicorn option is the one `voicechat serve` passes, so only the implementation differs.
"""

from __future__ import annotations

import cProfile
import os
import signal
import sys

import uvicorn

from voicechat.api import create_app
from voicechat.api.http_limits import uvicorn_options
from voicechat.gateway import MAX_FRAME_BYTES, WS_IMPLEMENTATION
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
        ws=WS_IMPLEMENTATION if sys.argv[1] == "serve" else sys.argv[1],
        ws_max_size=MAX_FRAME_BYTES,
        ws_per_message_deflate=False,
        **uvicorn_options(settings),
    )


if __name__ == "__main__":
    profile_to = os.environ.get("VOICECHAT_BENCH_PROFILE")
    if profile_to:
        # cProfile of the whole server, written when it stops (py-spy cannot attach here).
        # uvicorn raises the SIGTERM again once it has shut down: end here, not in the kernel.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            main()
        finally:
            profiler.disable()
            profiler.dump_stats(profile_to)
    else:
        main()
