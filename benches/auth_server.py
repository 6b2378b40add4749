"""`voicechat serve`'s app and uvicorn options plus two probe routes, for the auth benches.

`probe` is the same tiny route with and without `CurrentUser`: the difference between the two is
what authenticating a request costs. benches/test_auth.py mounts it in-process, and runs this
module as a live server (`python -m benches.auth_server [workers]`, with the VOICECHAT_*
environment of a server whose PostgreSQL and Valkey already run) for wrk to drive over TCP: one
process, or several worker processes sharing the port as `voicechat serve` runs them (each with
its own verdicts and revocation subscription).
"""

from __future__ import annotations

import sys

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


def worker_app() -> FastAPI:
    """The app factory of each worker process (settings from the environment)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn_options(settings)  # the HTTP limits live on the protocol class, per process
    return probed_app(settings)


def main() -> None:
    """Serve until SIGTERM with `voicechat serve`'s uvicorn options."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        "benches.auth_server:worker_app",
        factory=True,
        workers=int(sys.argv[1]) if len(sys.argv) > 1 else 1,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        **uvicorn_options(settings),
    )


if __name__ == "__main__":
    main()
