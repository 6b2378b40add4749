"""File fixtures: a real S3-speaking server (moto in server mode) on loopback, users, channels.

`storage` picks where the app keeps objects; modules that run against both backends set
`pytestmark = EACH_BACKEND`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import boto3
import httpx
import pytest
from mypy_boto3_s3 import S3Client

from tests.utils.auth import ApiUser
from tests.utils.dirs import service_dir
from tests.utils.net import free_port
from voicechat.settings import Settings
from voicechat.storage import FileStorage

S3_ACCESS_KEY = "voicechat-test-key"
S3_SECRET_KEY = "voicechat-test-secret-key"
S3_REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """A moto server process and a client for inspecting what it holds."""

    endpoint: str

    def client(self) -> S3Client:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=S3_REGION,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server as a separate process on a free loopback port."""
    port = free_port()
    root = service_dir("moto")
    log_path = root / "moto.log"
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"moto server exited:\n{log_path.read_text()}")
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise AssertionError("moto server did not start") from None
                time.sleep(0.1)
        yield S3Server(endpoint)
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def s3_settings(server: S3Server, bucket: str, prefix: str = "uploads") -> dict[str, object]:
    """Settings overrides that store files in `bucket` on the moto server."""
    return {
        "storage_url": f"s3://{bucket}/{prefix}",
        "s3_endpoint_url": server.endpoint,
        "s3_region": S3_REGION,
        "s3_access_key_id": S3_ACCESS_KEY,
        "s3_secret_access_key": S3_SECRET_KEY,
    }


@dataclass(frozen=True)
class StorageUnderTest:
    """Where the app under test keeps objects, and how to read them raw."""

    kind: str
    settings: dict[str, object]
    raw: Callable[[str], bytes | None]
    keys: Callable[[], list[str]]


def local_storage(files_dir: Path) -> StorageUnderTest:
    def raw(key: str) -> bytes | None:
        path = files_dir / key
        return path.read_bytes() if path.exists() else None

    def keys() -> list[str]:
        if not files_dir.exists():
            return []
        return sorted(str(p.relative_to(files_dir)) for p in files_dir.rglob("*") if p.is_file())

    return StorageUnderTest("local", {"storage_url": f"file://{files_dir}"}, raw, keys)


def s3_storage(server: S3Server) -> StorageUnderTest:
    bucket = f"voicechat-{uuid4().hex[:12]}"
    client = server.client()
    client.create_bucket(Bucket=bucket)
    prefix = "uploads/"

    def raw(key: str) -> bytes | None:
        try:
            return client.get_object(Bucket=bucket, Key=prefix + key)["Body"].read()
        except client.exceptions.NoSuchKey:
            return None

    def keys() -> list[str]:
        listing = client.list_objects_v2(Bucket=bucket)
        names = [item["Key"].removeprefix(prefix) for item in listing.get("Contents", [])]
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return sorted(names + [f"(unfinished) {u['Key']}" for u in uploads])

    return StorageUnderTest("s3", s3_settings(server, bucket), raw, keys)


@pytest.fixture
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> StorageUnderTest:
    """The local directory backend, unless a module asks for others with `EACH_BACKEND`."""
    if getattr(request, "param", "local") == "local":
        return local_storage(tmp_path / "objects")
    server: S3Server = request.getfixturevalue("s3_server")
    return s3_storage(server)


#: `pytestmark = EACH_BACKEND` runs a module's tests against the local directory and S3.
EACH_BACKEND = pytest.mark.parametrize("storage", ["local", "s3"], indirect=True)


@pytest.fixture
def settings(
    settings_factory: Callable[..., Settings],
    database_url: str,
    clean_valkey: str,
    storage: StorageUnderTest,
) -> Settings:
    """This test's settings, storing files where `storage` says, with a 12 MiB upload limit."""
    return settings_factory(
        database_url=database_url,
        valkey_url=clean_valkey,
        max_upload_bytes=UPLOAD_LIMIT,
        **storage.settings,
    )


UPLOAD_LIMIT = 12 * 1024 * 1024


@pytest.fixture
async def db(database_url: str) -> Any:
    """A direct connection to this test's database, for setting up rows."""
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def make_channel(
    conn: asyncpg.Connection, *, private: bool = False, members: tuple[ApiUser, ...] = ()
) -> str:
    """A text channel (and its members) inserted directly."""
    channel_id: UUID = await conn.fetchval(
        "INSERT INTO channels (name, type, private) VALUES ($1, 'text', $2) RETURNING id",
        f"files-{uuid4().hex[:8]}",
        private,
    )
    for member in members:
        await conn.execute(
            "INSERT INTO channel_members (channel_id, user_id) VALUES ($1, $2)",
            channel_id,
            UUID(member.id),
        )
    return str(channel_id)


async def attach(conn: asyncpg.Connection, file_id: str, author: ApiUser) -> None:
    """Attach an uploaded file to a new message in its channel (as sending it would)."""
    await conn.execute(
        """
        WITH message AS (
            INSERT INTO messages (id, channel_id, user_id, content)
            SELECT $3, channel_id, $2, 'see attached' FROM files WHERE id = $1
            RETURNING id
        )
        UPDATE files SET message_id = (SELECT id FROM message) WHERE id = $1
        """,
        UUID(file_id),
        UUID(author.id),
        uuid4(),
    )


async def upload(
    user: ApiUser,
    content: bytes,
    filename: str = "file.bin",
    *,
    content_type: str = "application/octet-stream",
    channel_id: str | None = None,
) -> httpx.Response:
    """POST /upload with a multipart body, as a browser's form would send it."""
    data = {"channel_id": channel_id} if channel_id is not None else None
    return await user.post("/upload", files={"file": (filename, content, content_type)}, data=data)


def object_key(file_id: str) -> str:
    """The backend key the server gives a file."""
    return FileStorage.object_key(UUID(file_id))


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
