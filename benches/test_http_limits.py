"""What a 40 MB request header costs the server, with and without the HTTP limits.

Pair: the same trivial ASGI app served by uvicorn with (a) voicechat's protocol
(`api/http_limits.py`, what `voicechat serve` runs) and (b) uvicorn's stock httptools protocol,
each in its own process. One client sends `GET /` with a 40 MB `X-Big` header while another
asks `GET /` every few milliseconds; reported per round: how long the big request took to be
answered (431, or 200 for the stock protocol) and the slowest answer the other client got
meanwhile (the event-loop stall everyone else sees).

    .venv/bin/pytest benches/test_http_limits.py -p no:cacheprovider -n 0 --benchmark-only -s
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.utils.net import free_port, wait_for_health

_HEADER_BYTES = 40 * 1024 * 1024


async def _app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b'{"status": "ok"}'})


def _serve(mode: str, port: int) -> None:
    import uvicorn

    from voicechat.api.http_limits import uvicorn_options
    from voicechat.settings import Settings

    options = uvicorn_options(Settings()) if mode == "limited" else {"http": "httptools"}
    uvicorn.run(_app, host="127.0.0.1", port=port, log_level="warning", **options)


@pytest.fixture(params=["limited", "stock"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 (fixed argv: this module)
        [sys.executable, "-m", "benches.test_http_limits", request.param, str(port)]
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base_url, timeout=30, expect_ok=False)
        yield request.param, base_url
    finally:
        process.terminate()
        process.wait(10)


def _one_big_header(base_url: str) -> tuple[float, float, str]:
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    worst = [0.0]
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            while not done.is_set():
                started = time.perf_counter()
                client.get("/")
                worst[0] = max(worst[0], time.perf_counter() - started)
                time.sleep(0.005)

    def send() -> None:
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
            piece = b"a" * 65536
            for _ in range(_HEADER_BYTES // len(piece)):
                sock.sendall(piece)
            sock.sendall(b"\r\n\r\n")
        except OSError:
            pass

    prober = threading.Thread(target=probe)
    prober.start()
    time.sleep(0.05)
    started = time.perf_counter()
    sender = threading.Thread(target=send)
    sender.start()
    answer = sock.recv(64)
    answered = time.perf_counter() - started
    sock.close()
    sender.join()
    time.sleep(0.05)
    done.set()
    prober.join()
    return answered, worst[0], answer.split(b"\r\n", 1)[0].decode(errors="replace")


@pytest.mark.benchmark(group="http-40mb-header")
def test_forty_megabyte_header(benchmark, server: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    mode, base_url = server
    rounds: list[tuple[float, float, str]] = []
    benchmark.pedantic(lambda: rounds.append(_one_big_header(base_url)), rounds=3, iterations=1)
    for answered, worst, status in rounds:
        print(
            f"{mode}: {status!r} after {answered * 1e3:.0f} ms; slowest other {worst * 1e3:.0f} ms"
        )
    benchmark.extra_info["answered_ms"] = [round(r[0] * 1000) for r in rounds]
    benchmark.extra_info["slowest_other_ms"] = [round(r[1] * 1000) for r in rounds]


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
