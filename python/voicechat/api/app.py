"""The FastAPI application factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from voicechat import __version__, _native
from voicechat.api import metrics
from voicechat.api.errors import install_error_handlers
from voicechat.api.middleware import (
    BodySizeLimitMiddleware,
    InputGuardMiddleware,
    RequestContextMiddleware,
)
from voicechat.api.openapi import install_openapi
from voicechat.api.proxies import TrustedProxies, TrustedProxyMiddleware
from voicechat.api.resources import Resources, open_resources
from voicechat.api.routes import (
    accounts,
    admin,
    audit,
    auth,
    bots,
    channels,
    device_keys,
    files,
    health,
    invites,
    messages,
    moderation,
    recipients,
    roles,
    search,
    sso,
    users,
    voice,
)
from voicechat.api.routes.gateway import GatewayEndpoint
from voicechat.logs import quiet_client_faults
from voicechat.settings import Settings

MAX_JSON_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings, *, resources: Resources | None = None) -> FastAPI:
    """Build the API for `settings`.

    Args:
        settings: validated settings whose database and Valkey URLs are resolved.
        resources: already-open handles to use instead of opening new ones (tests that
            share a pool); the caller then owns their lifetime.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if resources is not None:
            app.state.resources = resources
            yield
            return
        async with open_resources(settings) as opened:
            app.state.resources = opened
            # What start-up built (the app, its schemas, the pools) lives as long as the
            # process: out of the collector's sight, a full collection no longer walks it
            # (tens of ms each, under load, in the tail latency).
            gc.freeze()
            yield

    app = FastAPI(
        title="voicechat",
        version=__version__,
        summary="Self-hosted voice and text chat.",
        lifespan=lifespan,
    )
    metrics.BUILD_INFO.labels(__version__, _native.__version__).set(1)
    install_error_handlers(app)
    quiet_client_faults()
    # Starlette applies the last-added middleware outermost: the request context sees all.
    # Innermost: the input guard reads bodies the size limit has already bounded.
    app.add_middleware(InputGuardMiddleware)
    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=MAX_JSON_BODY_BYTES, exempt_prefixes=("/upload",)
    )
    # The gateway's sockets skip what lies inside (api/routes/gateway.py says why).
    app.add_middleware(GatewayEndpoint)
    app.add_middleware(RequestContextMiddleware)
    # Outermost: everything inside sees the client a trusted proxy reported (api/proxies.py).
    app.add_middleware(
        TrustedProxyMiddleware,
        proxies=TrustedProxies(settings.trusted_proxies, settings.proxy_client_header),
    )
    # The busiest routes first: FastAPI tries each included router in turn, ~10 us apiece.
    app.include_router(messages.router)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(sso.router)
    app.include_router(users.router)
    app.include_router(files.router)
    app.include_router(channels.router)
    app.include_router(roles.router)
    app.include_router(device_keys.router)
    app.include_router(recipients.router)
    app.include_router(voice.router)
    app.include_router(bots.router)
    app.include_router(admin.router)
    app.include_router(invites.router)
    app.include_router(audit.router)
    app.include_router(search.router)
    app.include_router(moderation.router)
    app.include_router(accounts.router)
    install_openapi(app)
    return app
