"""Chat fixtures: an administrator (the first user) and two ordinary members."""

from __future__ import annotations

import httpx
import pytest

from tests.utils.auth import ApiUser, api_user


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> ApiUser:
    return await api_user(client, "admin")


@pytest.fixture
async def alice(client: httpx.AsyncClient, admin: ApiUser) -> ApiUser:
    return await api_user(client, "alice")


@pytest.fixture
async def bob(client: httpx.AsyncClient, admin: ApiUser) -> ApiUser:
    return await api_user(client, "bob")
