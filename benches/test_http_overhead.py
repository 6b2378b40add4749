"""The cost of voicechat's middleware and error pipeline per request.

Pair: the same 404 answered by (a) the voicechat app (request id, access log, metrics, body
limit, error shape) and (b) a bare FastAPI app. The ratio is what our plumbing costs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from benches.harness import Harness
from voicechat.api import create_app
from voicechat.settings import Settings


@pytest.fixture
def quiet_access_log() -> Iterator[None]:
    access = logging.getLogger("voicechat.access")
    level = access.level
    access.setLevel(logging.WARNING)
    yield
    access.setLevel(level)


@pytest.mark.benchmark(group="http-404")
def test_voicechat_app_404(benchmark, settings: Settings, quiet_access_log: None) -> None:  # type: ignore[no-untyped-def]
    harness = Harness(create_app(settings))
    try:
        response = benchmark(lambda: harness.run(harness.client.get("/nope")))
    finally:
        harness.close()
    assert response.status_code == 404


@pytest.mark.benchmark(group="http-404")
def test_reference_bare_fastapi_404(benchmark) -> None:  # type: ignore[no-untyped-def]
    harness = Harness(FastAPI())
    try:
        response = benchmark(lambda: harness.run(harness.client.get("/nope")))
    finally:
        harness.close()
    assert response.status_code == 404
