"""Small helpers for tests that sign users up and call the API as them."""

from __future__ import annotations

from typing import Any

import httpx

DEFAULT_PASSWORD = "correct horse battery"


async def register(
    client: httpx.AsyncClient, username: str, password: str = DEFAULT_PASSWORD, **extra: Any
) -> dict[str, Any]:
    """Register and return the token response (asserting it worked)."""
    response = await client.post(
        "/auth/register", json={"username": username, "password": password, **extra}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for an access token."""
    return {"Authorization": f"Bearer {token}"}


class ApiUser:
    """A registered user and an HTTP client that acts as them."""

    def __init__(self, client: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
        self._client = client
        self.tokens = tokens
        self.id: str = tokens["user"]["id"]
        self.username: str = tokens["user"]["username"]
        self.headers = bearer(tokens["access_token"])

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self._client.get(url, headers=self.headers, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self._client.post(url, headers=self.headers, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self._client.patch(url, headers=self.headers, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self._client.put(url, headers=self.headers, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self._client.delete(url, headers=self.headers, **kwargs)

    async def channel(self, **body: Any) -> dict[str, Any]:
        """Create a channel (asserting it worked)."""
        response = await self.post("/channels", json={"type": "text", **body})
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def send(self, channel_id: str, content: str, **extra: Any) -> dict[str, Any]:
        """Send a message (asserting it worked)."""
        response = await self.post(
            f"/channels/{channel_id}/messages", json={"content": content, **extra}
        )
        assert response.status_code in (200, 201), response.text
        result: dict[str, Any] = response.json()
        return result


async def api_user(client: httpx.AsyncClient, username: str) -> ApiUser:
    """Register `username` and return it as an ApiUser."""
    return ApiUser(client, await register(client, username))
