"""`voicechat serve`'s app and uvicorn options plus two probe routes, for the auth benches.

`probe` is the same tiny route with and without `CurrentUser`: the difference between the two is
what authenticating a request costs. benches/test_auth.py mounts it in-process, and runs this
module as a live server (`python -m benches.auth_server`, with the VOICECHAT_* environment of a
server whose PostgreSQL and Valkey already run) for wrk to drive over TCP.
"""

from __future__ import annotations

import uvicorn
from fastapi import APIRouter, FastAPI

from voicechat.api import create_app
from voicechat.api.deps import CurrentUser
from voicechat.api.http_limits import uvicorn_options
from voicechat.logs import configure_logging
from voicechat.settings import Settings

probe = APIRouter(prefix="/_bench")


@probe.get("/anonymous")
async def anonymous() -> dict[str, str]:
    """The reference: no dependency at all."""
    return {"ok": "yes"}


@probe.get("/authenticated")
async def authenticated(caller: CurrentUser) -> dict[str, str]:
    """The same answer, for an authenticated caller."""
    return {"ok": str(caller.user_id)}


def probed_app(settings: Settings) -> FastAPI:
    """The voicechat app with the probe routes."""
    app = create_app(settings)
    app.include_router(probe)
    return app


def main() -> None:
    """Serve until SIGTERM, as one `voicechat serve` worker would."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        probed_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        **uvicorn_options(settings),
    )


if __name__ == "__main__":
    main()
