"""Uploads through a real `voicechat serve` (uvicorn): streamed, never held in memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import LiveServer
from tests.utils.auth import bearer

pytestmark = pytest.mark.slow

MIB = 1024 * 1024


@pytest.fixture
def server(
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> LiveServer:
    return live_server_factory(
        {
            "VOICECHAT_DATABASE_URL": database_url,
            "VOICECHAT_VALKEY_URL": clean_valkey,
            "VOICECHAT_DATA_DIR": str(tmp_path / "live-data"),
            "VOICECHAT_MAX_UPLOAD_BYTES": str(24 * MIB),
        }
    )


def _multipart(boundary: str, size: int) -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
    ).encode()
    piece = bytes(range(256)) * 1024
    for offset in range(0, size, len(piece)):
        yield piece[: size - offset]
    yield f"\r\n--{boundary}--\r\n".encode()


class PeakRss:
    """Samples a process's resident memory in a thread; keeps the highest value."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_large_upload_streams_with_bounded_memory(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        tokens = http.post(
            "/auth/register", json={"username": "alice", "password": "correct horse battery"}
        ).json()
        headers = {
            **bearer(tokens["access_token"]),
            "Content-Type": "multipart/form-data; boundary=xyz",
        }
        # Warm up: first-use imports and allocations are not the file.
        warm = http.post("/upload", content=_multipart("xyz", MIB), headers=headers)
        assert warm.status_code == 201, warm.text
        baseline = psutil.Process(server.process.pid).memory_info().rss
        size = 20 * MIB
        with PeakRss(server.process.pid) as rss:
            response = http.post("/upload", content=_multipart("xyz", size), headers=headers)
        assert response.status_code == 201, response.text
        assert response.json()["size_bytes"] == size
        # Holding the file would add 20 MiB or more; streaming adds a few chunks' worth.
        assert rss.peak - baseline < 8 * MIB, (baseline, rss.peak)

        fetched = http.get(response.json()["url"], headers=bearer(tokens["access_token"]))
        assert len(fetched.content) == size

        too_big = http.post("/upload", content=_multipart("xyz", 25 * MIB), headers=headers)
        assert too_big.status_code == 413
