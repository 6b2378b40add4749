"""Upload and download cost against their floor: sealing and writing the same bytes bare.

Pairs (8 MiB file, local backend):
- `POST /upload` through the app (auth, multipart parsing, sniffing, STREAM sealing, file
  write, row insert) vs the floor: `StreamSealer` over the bytes into a file.
- `GET /files/{id}` through the app vs the floor: reading the object and `StreamOpener`.
The ratio is what HTTP, multipart and bookkeeping add on top of the cryptography and disk.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benches.harness import Harness
from voicechat.api import create_app
from voicechat.settings import Settings
from voicechat.storage.sealed import StreamOpener, StreamSealer, new_object_key

SIZE = 8 * 1024 * 1024
PIECE = 64 * 1024
CONTENT = secrets.token_bytes(SIZE)


@pytest.fixture
def quiet_access_log() -> Iterator[None]:
    access = logging.getLogger("voicechat.access")
    level = access.level
    access.setLevel(logging.WARNING)
    yield
    access.setLevel(level)


@pytest.fixture
def harness(settings: Settings, quiet_access_log: None) -> Iterator[tuple[Harness, Any]]:
    bench = Harness(create_app(settings))
    tokens = bench.run(
        bench.client.post(
            "/auth/register", json={"username": "bencher", "password": "correct horse battery"}
        )
    ).json()
    try:
        yield bench, {"Authorization": f"Bearer {tokens['access_token']}"}
    finally:
        bench.close()


def _upload(bench: Harness, headers: Any) -> Any:
    return bench.run(
        bench.client.post("/upload", files={"file": ("noise.bin", CONTENT, "x/y")}, headers=headers)
    )


@pytest.mark.benchmark(group="files-upload-8MiB")
def test_upload_through_the_api(benchmark, harness: tuple[Harness, Any]) -> None:  # type: ignore[no-untyped-def]
    bench, headers = harness
    response = benchmark.pedantic(_upload, args=(bench, headers), rounds=10, warmup_rounds=1)
    assert response.status_code == 201


@pytest.mark.benchmark(group="files-upload-8MiB")
def test_reference_seal_and_write(benchmark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "object"

    def seal_and_write() -> None:
        sealer = StreamSealer(new_object_key())
        with target.open("wb") as out:
            for offset in range(0, SIZE, PIECE):
                out.write(sealer.update(CONTENT[offset : offset + PIECE]))
            out.write(sealer.finish())

    benchmark.pedantic(seal_and_write, rounds=10, warmup_rounds=1)


@pytest.mark.benchmark(group="files-download-8MiB")
def test_download_through_the_api(benchmark, harness: tuple[Harness, Any]) -> None:  # type: ignore[no-untyped-def]
    bench, headers = harness
    url = _upload(bench, headers).json()["url"]
    response = benchmark.pedantic(
        lambda: bench.run(bench.client.get(url, headers=headers)), rounds=10, warmup_rounds=1
    )
    assert response.content == CONTENT


@pytest.mark.benchmark(group="files-download-8MiB")
def test_reference_read_and_open(benchmark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = new_object_key()
    sealer = StreamSealer(key)
    target = tmp_path / "object"
    target.write_bytes(sealer.update(CONTENT) + sealer.finish())

    def read_and_open() -> bytes:
        opener = StreamOpener(key)
        pieces = []
        with target.open("rb") as source:
            while block := source.read(256 * 1024):
                pieces.append(opener.update(block))
        pieces.append(opener.finish())
        return b"".join(pieces)

    assert benchmark.pedantic(read_and_open, rounds=10, warmup_rounds=1) == CONTENT
