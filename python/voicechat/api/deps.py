"""Dependencies shared by the routes, as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from voicechat.api.proxies import client_ip
from voicechat.api.resources import Resources
from voicechat.auth.service import Authenticated, AuthService, Client
from voicechat.cache import Cache as CacheClient
from voicechat.db.pool import Connection
from voicechat.error_codes import ErrorCode
from voicechat.errors import Unauthorized
from voicechat.settings import Settings as SettingsModel


# Dependencies are `async def` even when they await nothing: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop per request for reading an attribute.
async def get_resources(request: Request) -> Resources:
    """The instance's shared handles, opened by the lifespan."""
    resources: Resources = request.app.state.resources
    return resources


async def get_db(request: Request) -> AsyncIterator[Connection]:
    """A pooled connection held for the duration of the request."""
    # The pool straight from the app's state: a sub-dependency would cost FastAPI another
    # round of dependency solving on every request that touches the database.
    resources: Resources = request.app.state.resources
    async with resources.db.acquire() as conn:
        yield conn


async def get_cache(resources: Annotated[Resources, Depends(get_resources)]) -> CacheClient:
    """The Valkey client."""
    return resources.cache


async def get_settings(resources: Annotated[Resources, Depends(get_resources)]) -> SettingsModel:
    """The validated settings of this instance."""
    return resources.settings


Res = Annotated[Resources, Depends(get_resources)]
Db = Annotated[Connection, Depends(get_db)]
Cache = Annotated[CacheClient, Depends(get_cache)]
Settings = Annotated[SettingsModel, Depends(get_settings)]


_bearer = HTTPBearer(auto_error=False, description="An access token from /auth/login.")


def get_auth(resources: Res) -> AuthService:
    """The auth service of this instance."""
    return resources.auth


def client_info(request: Request) -> Client:
    """The caller's address (as a trusted proxy reports it, api/proxies.py) and user agent."""
    return Client(ip=client_ip(request), user_agent=request.headers.get("user-agent", "")[:256])


def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str | None:
    """The bearer token of the request, if it carries one."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        return None
    return credentials.credentials


class _BearerAuthentication(HTTPBearer):
    """`CurrentUser`: the request's bearer token, authenticated, in one dependency.

    One dependency with nothing beneath it (the header read here, the service from the app's
    state) because FastAPI resolves each dependency of every request anew: the chain it
    replaces (bearer scheme, token, service, resources) cost more than the cached check
    itself. Still an `HTTPBearer`, so the OpenAPI document declares the scheme as before.
    """

    async def __call__(self, request: Request) -> Authenticated:  # type: ignore[override]
        """The authenticated caller; 401 in the error shape otherwise."""
        scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            # Checked only off the Bearer path, which stays as it was (docs/accounts.md "Bots").
            if token and scheme.lower() == "bot":
                bots: Resources = request.app.state.resources
                return await bots.auth.authenticate_bot(token, client_ip(request))
            raise Unauthorized("an access token is required", code=ErrorCode.MISSING_TOKEN)
        resources: Resources = request.app.state.resources
        return await resources.auth.authenticate(token)


current_user = _BearerAuthentication(
    auto_error=False, description="An access token from /auth/login.", scheme_name="HTTPBearer"
)


Auth = Annotated[AuthService, Depends(get_auth)]
BearerToken = Annotated[str | None, Depends(bearer_token)]
ClientInfo = Annotated[Client, Depends(client_info)]
CurrentUser = Annotated[Authenticated, Depends(current_user)]
