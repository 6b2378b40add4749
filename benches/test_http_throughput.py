"""HTTP throughput of `voicechat serve`, one worker and one per core, against the floor.

wrk (16 connections) drives `POST /channels/{id}/messages` (a Lua script sets the JSON body and
the bearer token, as a client sends them) and `GET /channels/{id}/messages?limit=50` (a page of
a 200-message history). The reference, in the same run with the same number of worker
processes and the same database: `benches/http_floor.py`, a bare Starlette + asyncpg app
running the same insert and the same page query with no auth, checks or middleware. The
ratio is what voicechat costs on top of the floor of Python and PostgreSQL here.

`scripts/bench.sh -k throughput`; BENCH_WORKERS (default "1,2") and BENCH_SECONDS (default 8)
narrow a run. docs/performance.md, HTTP throughput, has the figures.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD
from tests.utils.net import free_port, wait_for_health

CONNECTIONS = 16
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
WORKERS = tuple(int(n) for n in os.environ.get("BENCH_WORKERS", "1,2").split(","))
WARMUP = 2
HISTORY = 200
BODY = '{"content": "a message of about the length people type in a chat, sixty-odd"}'


@dataclass(frozen=True)
class Run:
    rps: float
    p50_ms: float
    p99_ms: float


def _post_script(tmp_path: Path, token: str | None) -> Path:
    script = tmp_path / f"post-{token is not None}.lua"
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{BODY}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n' + auth
    )
    return script


def _wrk(
    url: str, *, token: str | None = None, script: Path | None = None, seconds: int = SECONDS
) -> Run:
    """`seconds` of load after WARMUP seconds of the same (pools filled, statements prepared,
    caches warm: the steady state is measured, not the first second of a fresh process)."""
    if seconds == SECONDS:
        _wrk(url, token=token, script=script, seconds=WARMUP)
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
    elif token is not None:
        argv += ["-H", f"Authorization: Bearer {token}"]
    result = subprocess.run(  # noqa: S603 (fixed argv, our own URL)
        [*argv, url], capture_output=True, text=True, check=True
    )
    text = result.stdout
    assert "Non-2xx" not in text, text
    assert "Socket errors" not in text, text

    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", text, re.MULTILINE)
        assert match, text
        value, unit = float(match[1]), match[2]
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    assert rps, text
    return Run(float(rps[1]), latency("50"), latency("99"))


def _seed(base_url: str, username: str) -> tuple[str, str, str, str]:
    """A user, a channel with HISTORY messages to page and an empty one to send to."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        tokens = http.post(
            "/auth/register", json={"username": username, "password": DEFAULT_PASSWORD}
        ).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        history = http.post(
            "/channels", json={"name": "history", "type": "text"}, headers=headers
        ).json()["id"]
        inbox = http.post("/channels", json={"name": "inbox", "type": "text"}, headers=headers)
        for i in range(HISTORY):
            http.post(
                f"/channels/{history}/messages",
                json={"content": f"message number {i} " + "x" * 80},
                headers=headers,
            ).raise_for_status()
        return tokens["access_token"], tokens["user"]["id"], history, inbox.json()["id"]


@contextmanager
def _floor(database_url: str, user_id: str, workers: int, log: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "FLOOR_DSN": database_url, "FLOOR_USER_ID": user_id}
    argv = [sys.executable, "-m", "uvicorn", "benches.http_floor:app", "--port", str(port)]
    argv += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/channels/{user_id}/messages?limit=1").raise_for_status()
                break
            except httpx.HTTPError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(30)


def test_http_throughput(
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
    benchmark: Callable[..., object],
) -> None:
    lines = [f"HTTP throughput, wrk -t1 -c{CONNECTIONS} -d{SECONDS}s, load {os.getloadavg()}"]
    results: dict[str, object] = {}
    seeded: tuple[str, str, str, str] | None = None
    for workers in WORKERS:
        server = live_server_factory(
            {
                "VOICECHAT_DATABASE_URL": database_url,
                "VOICECHAT_VALKEY_URL": clean_valkey,
                # One data dir: the same signing key, so the seeded token stays good.
                "VOICECHAT_DATA_DIR": str(tmp_path / "data"),
                "VOICECHAT_WORKERS": str(workers),
            }
        )
        wait_for_health(server.base_url, timeout=60)
        if seeded is None:
            seeded = _seed(server.base_url, "bencher")
        token, user_id, history, inbox = seeded
        base = server.base_url
        api_get = _wrk(f"{base}/channels/{history}/messages?limit=50", token=token)
        api_post = _wrk(f"{base}/channels/{inbox}/messages", script=_post_script(tmp_path, token))
        server.stop()
        with _floor(database_url, user_id, workers, tmp_path / f"floor-{workers}.log") as floor:
            floor_get = _wrk(f"{floor}/channels/{history}/messages?limit=50")
            floor_post = _wrk(
                f"{floor}/channels/{inbox}/messages", script=_post_script(tmp_path, None)
            )
        for what, api, ref in [
            ("POST", api_post, floor_post),
            ("GET ?limit=50", api_get, floor_get),
        ]:
            lines.append(
                f"  {workers} worker(s) {what:<14} voicechat {api.rps:6.0f}/s "
                f"(p50 {api.p50_ms:5.1f} p99 {api.p99_ms:6.1f} ms)  floor {ref.rps:6.0f}/s "
                f"(p50 {ref.p50_ms:5.1f} p99 {ref.p99_ms:6.1f} ms)  ratio {api.rps / ref.rps:.2f}"
            )
            results[f"{workers}-{what}"] = {"api": vars(api), "floor": vars(ref)}
    lines.append(f"  load after {os.getloadavg()}")
    print("\n" + "\n".join(lines))
    benchmark.extra_info.update(results)  # type: ignore[attr-defined]
    benchmark.pedantic(lambda: None, rounds=1)  # type: ignore[attr-defined]
