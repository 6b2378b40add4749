"""The cost of voicechat's middleware and error pipeline per request.

Pair: the same 404 answered by (a) the voicechat app (request id, access log, metrics, body
limit, error shape) and (b) a bare FastAPI app. The ratio is what our plumbing costs.
"""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from voicechat.api import create_app
from voicechat.settings import Settings


@pytest.fixture
def quiet_logs() -> None:
    logging.getLogger("voicechat.access").setLevel(logging.WARNING)


@pytest.mark.benchmark(group="http-404")
def test_voicechat_app_404(benchmark, settings: Settings, quiet_logs: None) -> None:  # type: ignore[no-untyped-def]
    with TestClient(create_app(settings)) as client:
        response = benchmark(client.get, "/nope")
    assert response.status_code == 404


@pytest.mark.benchmark(group="http-404")
def test_reference_bare_fastapi_404(benchmark) -> None:  # type: ignore[no-untyped-def]
    with TestClient(FastAPI()) as client:
        response = benchmark(client.get, "/nope")
    assert response.status_code == 404
