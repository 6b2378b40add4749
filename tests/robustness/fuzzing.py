"""Schemathesis over the whole OpenAPI document of a live server, and the totals of the run.

Used by the CI suite (`test_fuzz.py`, a bounded number of cases per operation) and by the longer
run of `scripts/fuzz.sh` (`python -m tests.robustness.fuzzing`, ≥ 20,000 cases): both drive
schemathesis's engine (the one behind its CLI) with every check but `positive_data_acceptance`
and count what came back. Why that one check is off: it expects any request the schema allows to
be accepted, and this API refuses schema-valid requests for reasons the schema cannot carry
(state: `mfa_not_enabled`, `no_device`; rules across fields: `user_limit` only on voice
channels; and, by design, NUL and lone surrogates in any string: 422, docs/reliability.md).

A run is two passes: as a registered administrator (bearer token; operations that end the
session, `POST /auth/logout` and `DELETE /auth/sessions/{id}`, are left to the other pass so
the token stays good), and without credentials.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, from_schema
from schemathesis.engine.events import EngineFinished, FatalError, NonFatalError

#: Every check schemathesis has, but the one this API cannot meet by design (module docstring).
EXCLUDED_CHECKS = ("positive_data_acceptance",)
#: What a request the document does not allow may be answered (schemathesis's list, and the
#: limits on the URL, the head and the body).
REFUSALS = [400, 401, 403, 404, 405, 406, 409, 413, 414, 415, 422, 428, 429, 431]
#: What would end the fuzzing user's session mid-run.
SESSION_ENDING = r"^/auth/(logout|sessions/\{session_id\})$"


@dataclass
class FuzzTotals:
    """What a run sent and what it found."""

    cases: int = 0
    server_errors: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def schema_violations(self) -> int:
        """Answers that break the document: undocumented status, header, type or body."""
        return sum(
            count
            for name, count in self.failures.items()
            if name
            in (
                "status_code_conformance",
                "content_type_conformance",
                "response_headers_conformance",
                "response_schema_conformance",
            )
        )

    def add(self, other: FuzzTotals) -> None:
        """Fold another pass into these totals."""
        self.cases += other.cases
        self.server_errors += other.server_errors
        self.failures.update(other.failures)
        self.examples.extend(other.examples)
        self.errors.extend(other.errors)
        self.statuses.update(other.statuses)

    def summary(self) -> str:
        """One paragraph for a person."""
        found = ", ".join(f"{name} {count}" for name, count in sorted(self.failures.items()))
        statuses = " ".join(f"{code}:{n}" for code, n in sorted(self.statuses.items()))
        return (
            f"cases {self.cases}, 5xx {self.server_errors}, schema violations "
            f"{self.schema_violations}, failed checks {sum(self.failures.values())}"
            f" ({found or 'none'}); statuses {statuses}"
        )


def fuzz(
    base_url: str,
    *,
    token: str | None,
    max_examples: int,
    seed: int | None = None,
    workers: int = 2,
    phases: tuple[str, ...] = ("examples", "coverage", "fuzzing", "stateful"),
) -> FuzzTotals:
    """Run schemathesis once over every operation of `base_url`'s OpenAPI document.

    Args:
        base_url: the live server.
        token: an access token to send as `Authorization: Bearer` (None: no credentials).
        max_examples: cases per operation and phase (schemathesis's `max-examples`).
        seed: for a reproducible run.
        workers: concurrent requests.
        phases: schemathesis phases to run.
    """
    settings: dict[str, Any] = {
        "workers": workers,
        "request-timeout": 10,
        "generation": {"max-examples": max_examples, "mode": "all", "database": "none"},
        "checks": {
            **{name: {"enabled": False} for name in EXCLUDED_CHECKS},
            # Refusals also come from the HTTP limits before any route (api/http_limits.py).
            "negative_data_rejection": {"expected-statuses": REFUSALS},
        },
        "phases": {
            name: {"enabled": name in phases}
            for name in ("examples", "coverage", "fuzzing", "stateful")
        },
        "warnings": False,
        "output": {"sanitization": {"enabled": False}},
    }
    if seed is not None:
        settings["seed"] = seed
    if token is not None:
        settings["headers"] = {"Authorization": f"Bearer {token}"}
    config = SchemathesisConfig.from_dict(settings)
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)
    if token is not None:
        schema = schema.exclude(path_regex=SESSION_ENDING)
    totals = FuzzTotals()
    for event in from_schema(schema).execute():
        recorder = getattr(event, "recorder", None)
        if recorder is not None:
            _count(recorder, totals)
        elif isinstance(event, NonFatalError):
            totals.errors.append(f"{event.label}: {event.value!r}")
        elif isinstance(event, FatalError):
            totals.errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, EngineFinished):
            break
    return totals


def _count(recorder: Any, totals: FuzzTotals) -> None:
    for interaction in recorder.interactions.values():
        totals.cases += 1
        response = interaction.response
        if response is None:
            continue
        totals.statuses[response.status_code] += 1
        if response.status_code >= 500:
            totals.server_errors += 1
    for checks in recorder.checks.values():
        for check in checks:
            if check.status != Status.FAILURE:
                continue
            totals.failures[check.name] += 1
            if len(totals.examples) < 20 and check.failure_info is not None:
                failure = check.failure_info.failure
                example = (
                    f"{check.name} on {recorder.label}: {failure.title}\n{failure.message}\n"
                    f"{check.failure_info.code_sample}"
                )
                totals.examples.append(example if len(example) < 2000 else example[:2000] + "…")


def register_admin(base_url: str) -> str:
    """Register the first user (the administrator) and return an access token."""
    response = httpx.post(
        f"{base_url}/auth/register",
        json={"username": "fuzz-admin", "password": "correct horse battery"},
        timeout=30,
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def fuzz_both_ways(base_url: str, *, max_examples: int, seed: int | None = None) -> FuzzTotals:
    """An authenticated pass and an anonymous one, added up."""
    totals = fuzz(base_url, token=register_admin(base_url), max_examples=max_examples, seed=seed)
    totals.add(fuzz(base_url, token=None, max_examples=max_examples, seed=seed))
    return totals


def _serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "VOICECHAT_DATA_DIR": str(data_dir),
        "VOICECHAT_PORT": str(port),
        "VOICECHAT_MEDIA_PORT": "0",
        "VOICECHAT_LOG_FORMAT": "json",
        # One client signs many users up and logs in very often; the limits are tested elsewhere.
        "VOICECHAT_RATE_LIMIT_REGISTER_IP": "100000/hour",
    }
    log = (data_dir / "serve.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "voicechat", "serve"], stdout=log, stderr=subprocess.STDOUT, env=env
    )


def main() -> int:
    """`scripts/fuzz.sh`: a long run against a fresh `voicechat serve` (embedded services)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--max-examples", type=int, default=250)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--port", type=int, default=18931)
    parser.add_argument("--url", help="fuzz this running server instead of starting one")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="voicechat-fuzz-") as scratch:
        server = None
        base_url = args.url
        if base_url is None:
            # As root the embedded PostgreSQL runs as another user, who must get through.
            Path(scratch).chmod(0o755)
            server = _serve(Path(scratch), args.port)
            base_url = f"http://127.0.0.1:{args.port}"
            _wait_healthy(base_url, server, Path(scratch) / "serve.log")
        try:
            totals = fuzz_both_ways(base_url, max_examples=args.max_examples, seed=args.seed)
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)
        for example in totals.examples:
            sys.stdout.write(f"{example}\n\n")
        for error in totals.errors:
            sys.stdout.write(f"error: {error}\n")
        sys.stdout.write(f"fuzz: {totals.summary()}; {time.monotonic() - started:.0f} s\n")
    return 1 if totals.server_errors or totals.failures or totals.errors else 0


def _wait_healthy(base_url: str, server: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = log_path.read_text(errors="replace")[-4000:]
            raise SystemExit(f"voicechat serve exited with {server.returncode}:\n{tail}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("voicechat serve did not become healthy")


if __name__ == "__main__":
    raise SystemExit(main())
