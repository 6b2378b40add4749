"""Drive an ASGI app from synchronous pytest-benchmark code."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import httpx
from fastapi import FastAPI

T = TypeVar("T")


class Harness:
    """An app with its lifespan running on a private event loop, driven synchronously."""

    def __init__(self, app: FastAPI) -> None:
        self.loop = asyncio.new_event_loop()
        self.app = app
        self._lifespan = app.router.lifespan_context(app)
        self.loop.run_until_complete(self._lifespan.__aenter__())
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        )

    def run(self, coro: Awaitable[T]) -> T:
        """Run one coroutine to completion on the harness loop."""
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.client.aclose())
        self.run(self._lifespan.__aexit__(None, None, None))
        self.loop.close()
