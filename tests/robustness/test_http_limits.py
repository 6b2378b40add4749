"""Limits on the HTTP request itself, against a live `voicechat serve` over raw sockets.

What an attacker sends here (a 40 MB header, a thousand headers, a huge URL, a body bigger
than any route takes, a header a byte at a time) is answered by the server before the app
runs, in the error shape, and the connection is closed; other clients keep being served.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import LiveServer, _scratch_database
from tests.utils.net import free_port, wait_for_health

_HEADER_TIMEOUT_SECONDS = 1
_BODY_IDLE_TIMEOUT_SECONDS = 1
_MAX_UPLOAD = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def server(
    postgres_dsn: str,
    template_database: str,
    valkey_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    """One live server for the whole module: every test here only talks HTTP to it."""
    data_dir = tmp_path_factory.mktemp("http-limits")
    with _scratch_database(postgres_dsn, template_database) as database_url:
        port = free_port()
        env = {
            **os.environ,
            "VOICECHAT_PORT": str(port),
            "VOICECHAT_LOG_FORMAT": "json",
            "VOICECHAT_MEDIA_PORT": "0",
            "VOICECHAT_DATABASE_URL": database_url,
            "VOICECHAT_VALKEY_URL": valkey_url,
            "VOICECHAT_DATA_DIR": str(data_dir / "data"),
            "VOICECHAT_HTTP_HEADER_TIMEOUT": str(_HEADER_TIMEOUT_SECONDS),
            "VOICECHAT_HTTP_BODY_IDLE_TIMEOUT": str(_BODY_IDLE_TIMEOUT_SECONDS),
            "VOICECHAT_MAX_UPLOAD_BYTES": str(_MAX_UPLOAD),
        }
        log_path = data_dir / "serve.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "voicechat", "serve"],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
            )
        live = LiveServer(process, f"http://127.0.0.1:{port}", log_path)
        try:
            try:
                wait_for_health(live.base_url, timeout=90)
            except TimeoutError:
                raise AssertionError(f"server did not become healthy:\n{live.log}") from None
            yield live
        finally:
            live.stop()


def _connect(server: LiveServer) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one response to its end (the server closes after a refusal)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def _read_to_eof(sock: socket.socket) -> bytes:
    rest = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return rest
        if not chunk:
            return rest
        rest += chunk


def _assert_refused(response: tuple[int, dict[str, str], bytes], status: int, code: str) -> None:
    got_status, headers, body = response
    assert got_status == status, body
    assert headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == code
    assert error["message"]


def _send_quietly(sock: socket.socket, chunks: Callable[[], object]) -> threading.Thread:
    """Send in a thread until done or the server hangs up (which is the point)."""

    def run() -> None:
        try:
            for chunk in chunks():  # type: ignore[attr-defined]
                sock.sendall(chunk)
        except OSError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_40_mb_header_gets_431_while_health_keeps_answering(server: LiveServer) -> None:
    sock = _connect(server)

    def forty_megabytes() -> object:
        yield b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: "
        for _ in range(40 * 16):
            yield b"a" * 65536

    sender = _send_quietly(sock, forty_megabytes)
    with httpx.Client(base_url=server.base_url, timeout=10) as other:
        health = [other.get("/health").status_code for _ in range(10)]
    _assert_refused(_read_response(sock), 431, "request_header_too_large")
    sock.close()
    sender.join(timeout=30)
    assert health
    assert set(health) == {200}


def test_too_many_headers_get_431(server: LiveServer) -> None:
    with _connect(server) as sock:
        headers = b"".join(b"X-H%d: v\r\n" % i for i in range(500))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        _assert_refused(_read_response(sock), 431, "request_header_too_large")


def test_a_long_request_line_gets_414(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /health?q=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        _assert_refused(_read_response(sock), 414, "uri_too_long")


def test_requests_within_the_limits_are_served(server: LiveServer) -> None:
    headers = {f"x-fill-{i}": "v" * 200 for i in range(80)}  # 80 lines, ~18 KB
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        assert client.get("/health", headers=headers).status_code == 200
        assert client.get("/health", params={"q": "a" * 4000}).status_code == 200


def test_a_declared_body_over_the_largest_limit_gets_413_before_it_is_sent(
    server: LiveServer,
) -> None:
    for path in (b"/upload", b"/auth/register"):
        with _connect(server) as sock:
            sock.sendall(
                b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 50000000000\r\n\r\n"
            )
            _assert_refused(_read_response(sock), 413, "payload_too_large")


def test_a_chunked_body_over_the_largest_limit_gets_413(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        registered = client.post(
            "/auth/register", json={"username": "uploader", "password": "correct horse battery"}
        )
        token = registered.json()["access_token"]
    sock = _connect(server)

    def chunked_upload() -> object:
        yield (
            b"POST /upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        part = (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n"
        )
        yield b"%x\r\n" % len(part) + part + b"\r\n"
        piece = b"x" * 65536
        for _ in range(_MAX_UPLOAD // len(piece) + 16):
            yield b"%x\r\n" % len(piece) + piece + b"\r\n"
        yield b"0\r\n\r\n"

    sender = _send_quietly(sock, chunked_upload)
    status, _, body = _read_response(sock)
    sock.close()
    sender.join(timeout=30)
    assert status == 413, body
    assert json.loads(body)["error"]["code"] == "payload_too_large"


def test_a_slowloris_client_is_cut_off(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        sent = 0
        # One byte of an endless header every 0.2 s; the server must hang up on its own.
        sock.settimeout(0.2)
        answer = b""
        while sent < 200:
            try:
                sock.sendall(b"X-Slow: a\r\n"[sent % 11 : sent % 11 + 1])
            except OSError:
                break
            sent += 1
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            break
        sock.settimeout(10)
        answer += _read_to_eof(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"request_timeout"' in answer
    assert sent < 200


def test_a_connection_that_sends_nothing_is_closed(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.settimeout(10 * _HEADER_TIMEOUT_SECONDS)
        assert _read_to_eof(sock) == b""


def test_a_body_that_stops_arriving_gets_408(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"username": '
        )
        _assert_refused(_read_response(sock), 408, "request_timeout")


def test_a_kept_alive_connection_serves_a_slow_second_request(server: LiveServer) -> None:
    # The keep-alive timer armed after the first answer (5 s) must not cut off a second request
    # whose body is still trickling in when it would have fired.
    body = b'{"username": "nobody", "password": "wrong password"}'
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(sock)[0] == 200
        time.sleep(4)
        sock.sendall(
            b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        for offset in range(0, 6):  # ~3 s of body, well within the body idle timeout
            sock.sendall(body[offset : offset + 1])
            time.sleep(0.5)
        sock.sendall(body[6:])
        status, _, answer = _read_response(sock)
    assert status == 401, answer
    assert json.loads(answer)["error"]["code"] == "invalid_credentials"
