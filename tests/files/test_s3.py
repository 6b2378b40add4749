"""The S3 backend's configuration and health against moto on loopback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.files.conftest import PNG, S3Server, s3_settings, upload
from tests.utils.auth import api_user
from voicechat.api import create_app
from voicechat.settings import Settings, SettingsError, load_settings


async def _client_for(app: FastAPI) -> Any:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_health_reports_a_missing_bucket(
    s3_server: S3Server,
    settings_factory: Callable[..., Settings],
    database_url: str,
    clean_valkey: str,
) -> None:
    settings = settings_factory(
        database_url=database_url,
        valkey_url=clean_valkey,
        **s3_settings(s3_server, "no-such-bucket"),
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), await _client_for(app) as client:
        body = (await client.get("/health")).json()
    assert body["status"] == "degraded"
    assert body["components"]["storage"]["status"] == "down"


async def test_objects_land_under_the_configured_prefix(
    s3_server: S3Server,
    settings_factory: Callable[..., Settings],
    database_url: str,
    clean_valkey: str,
) -> None:
    s3 = s3_server.client()
    s3.create_bucket(Bucket="prefixed")
    settings = settings_factory(
        database_url=database_url,
        valkey_url=clean_valkey,
        **s3_settings(s3_server, "prefixed", prefix="team/files"),
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), await _client_for(app) as client:
        alice = await api_user(client, "alice")
        file = (await upload(alice, PNG, "a.png")).json()
        assert (await alice.get(file["url"])).content == PNG
    names = [item["Key"] for item in s3.list_objects_v2(Bucket="prefixed")["Contents"]]
    assert names == [f"team/files/{file['id'][-2:]}/{file['id']}"]


def test_s3_credentials_come_in_pairs() -> None:
    with pytest.raises(SettingsError, match="VOICECHAT_S3_ACCESS_KEY_ID"):
        load_settings(storage_url="s3://bucket", s3_access_key_id="AKIAEXAMPLE")


def test_production_refuses_a_placeholder_s3_secret(tmp_path: Any) -> None:
    with pytest.raises(SettingsError, match="VOICECHAT_S3_SECRET_ACCESS_KEY"):
        load_settings(
            env="production",
            data_dir=tmp_path,
            master_key="MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            storage_url="s3://bucket",
            s3_access_key_id="AKIAEXAMPLE",
            s3_secret_access_key="changeme",
        )


def test_upload_limit_is_configurable() -> None:
    with pytest.raises(SettingsError, match="VOICECHAT_MAX_UPLOAD_BYTES"):
        load_settings(max_upload_bytes=0)
    assert load_settings().max_upload_bytes == 25 * 1024 * 1024
