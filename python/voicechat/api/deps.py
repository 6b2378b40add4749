"""Dependencies shared by the routes, as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from voicechat.api.resources import Resources
from voicechat.cache import Cache as CacheClient
from voicechat.db.pool import Connection
from voicechat.settings import Settings as SettingsModel


def get_resources(request: Request) -> Resources:
    """The instance's shared handles, opened by the lifespan."""
    resources: Resources = request.app.state.resources
    return resources


async def get_db(
    resources: Annotated[Resources, Depends(get_resources)],
) -> AsyncIterator[Connection]:
    """A pooled connection held for the duration of the request."""
    async with resources.db.acquire() as conn:
        yield conn


def get_cache(resources: Annotated[Resources, Depends(get_resources)]) -> CacheClient:
    """The Valkey client."""
    return resources.cache


def get_settings(resources: Annotated[Resources, Depends(get_resources)]) -> SettingsModel:
    """The validated settings of this instance."""
    return resources.settings


Res = Annotated[Resources, Depends(get_resources)]
Db = Annotated[Connection, Depends(get_db)]
Cache = Annotated[CacheClient, Depends(get_cache)]
Settings = Annotated[SettingsModel, Depends(get_settings)]
