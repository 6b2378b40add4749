"""`/health`, `/metrics` and `/openapi.json` against real PostgreSQL and Valkey."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.utils.dirs import service_dir
from tests.utils.net import free_port
from voicechat.api import create_app
from voicechat.embedded import EmbeddedValkey
from voicechat.settings import Settings


async def test_health_is_ok_with_every_component(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["components"]) == {"postgres", "valkey", "storage", "native", "sfu"}
    assert all(c["status"] == "ok" for c in body["components"].values())


async def test_health_names_the_ports_of_every_media_thread(
    settings_factory: Callable[..., Settings], database_url: str, clean_valkey: str
) -> None:
    first = free_port()
    app = create_app(
        settings_factory(
            database_url=database_url,
            valkey_url=clean_valkey,
            media_port=first,
            media_workers=1,
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            single = (await client.get("/health")).json()["components"]["sfu"]
    assert single["detail"] == f"SFU in this process, udp 127.0.0.1:{first}"
    app = create_app(
        settings_factory(
            database_url=database_url, valkey_url=clean_valkey, media_port=0, media_workers=3
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            three = (await client.get("/health")).json()["components"]["sfu"]
    assert three["status"] == "ok"
    ports = three["detail"].removeprefix("SFU in this process, udp 127.0.0.1:").split(",")
    assert len(set(ports)) == 3
    assert all(1024 <= int(port) <= 65535 for port in ports)


async def test_health_reports_a_stopped_valkey(
    settings_factory: Callable[..., Settings], database_url: str
) -> None:
    root = service_dir("valkey-down")
    valkey = EmbeddedValkey(root / "valkey")
    try:
        url = valkey.start()
        app = create_app(settings_factory(database_url=database_url, valkey_url=url))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/health")).json()["status"] == "ok"
                valkey.stop()
                response = await client.get("/health")
                ready = await client.get("/health/ready")
                metrics = (await client.get("/metrics")).text
    finally:
        valkey.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["components"]["valkey"]["status"] == "down"
    assert body["components"]["postgres"]["status"] == "ok"
    assert 'voicechat_component_up{component="valkey"} 0.0' in metrics
    # Every request needs Valkey: a load balancer must stop routing here.
    assert ready.status_code == 503
    assert ready.json()["components"]["valkey"]["status"] == "down"


async def test_an_instance_without_storage_or_voice_is_degraded_but_ready(
    settings_factory: Callable[..., Settings], database_url: str, clean_valkey: str
) -> None:
    # Nothing listens on the S3 endpoint and no voice node runs: files and voice are out,
    # chat still works, so the instance stays in the load balancer's rotation.
    settings = settings_factory(
        database_url=database_url,
        valkey_url=clean_valkey,
        storage_url="s3://bucket/uploads",
        s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
        s3_access_key_id="key",
        s3_secret_access_key="not-a-real-secret",
        voice_mode="remote",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            health = await client.get("/health")
            ready = await client.get("/health/ready")
    assert health.status_code == 503
    components = health.json()["components"]
    assert components["storage"]["status"] == "down"
    assert components["voice"] == {
        "status": "down",
        "latency_ms": None,
        "detail": "no voice node is running",
    }
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"


async def test_metrics_are_prometheus_text(client: httpx.AsyncClient) -> None:
    await client.get("/health")
    await client.get("/no-such-route")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'voicechat_http_requests_total{method="GET",route="/health",status="200"}' in text
    # Unknown paths share one label so that scanners cannot blow up the series count.
    assert 'route="unmatched",status="404"' in text
    assert "voicechat_http_request_duration_seconds_bucket" in text
    assert "voicechat_build_info" in text


async def test_openapi_describes_the_api(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["info"]["title"] == "voicechat"
    assert "/health" in spec["paths"]


@pytest.fixture
def moto_checking_keys() -> Iterator[str]:
    """A moto S3 server that checks signatures (IAM auth on: INITIAL_NO_AUTH_ACTION_COUNT=0)."""
    port = free_port()
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1.0)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "moto did not start"
                time.sleep(0.1)
        yield endpoint
    finally:
        moto.kill()
        moto.wait(10)


async def test_health_says_when_s3_refuses_the_key(
    settings_factory: Callable[..., Settings],
    database_url: str,
    clean_valkey: str,
    moto_checking_keys: str,
) -> None:
    # A key the server does not know is refused with InvalidAccessKeyId: /health names it.
    settings = settings_factory(
        database_url=database_url,
        valkey_url=clean_valkey,
        storage_url="s3://bucket/uploads",
        s3_endpoint_url=moto_checking_keys,
        s3_region="us-east-1",
        s3_access_key_id="AKIAUNKNOWNKEY000000",
        s3_secret_access_key="not-the-right-secret",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            storage = (await client.get("/health")).json()["components"]["storage"]
    assert storage["status"] == "down"
    assert "refused our credentials (InvalidAccessKeyId)" in storage["detail"]
