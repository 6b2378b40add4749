"""Schemathesis over the whole OpenAPI document of a live server, and the totals of the run.

Used by the CI suite (`test_fuzz.py`, a bounded number of cases per operation) and by the longer
run of `scripts/fuzz.sh` (`python -m tests.robustness.fuzzing`, ≥ 20,000 cases): both drive
schemathesis's engine (the one behind its CLI) with every check but `positive_data_acceptance`
and count what came back. Why that one check is off: it expects any request the schema allows to
be accepted, and this API refuses schema-valid requests for reasons the schema cannot carry
(state: `mfa_not_enabled`, `no_device`; rules across fields: `user_limit` only on voice
channels; and, by design, NUL and lone surrogates in any string: 422, docs/reliability.md).

A run is made of passes: as the registered administrator, as an ordinary member (both with a
bearer token; operations that end the session, `POST /auth/logout` and
`DELETE /auth/sessions/{id}`, are left to the anonymous pass so the token stays good), and
without credentials. The long run splits each pass into its phases (examples, coverage,
fuzzing, stateful: links inferred from `Location` headers and from response fields that match
parameters), one chunk at a time under a lock file if asked (`--lock`), so a shared machine's
benchmarks can run between chunks; it signs in again before each chunk.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, from_schema
from schemathesis.engine.events import (
    EngineFinished,
    FatalError,
    NonFatalError,
    PhaseStarted,
    StatefulPhasePayload,
)
from schemathesis.schemas import BaseSchema

#: Every check schemathesis has, but the one this API cannot meet by design (module docstring).
EXCLUDED_CHECKS = ("positive_data_acceptance",)
#: What a request the document does not allow may be answered (schemathesis's list, and the
#: limits on the URL, the head and the body).
REFUSALS = [400, 401, 403, 404, 405, 406, 409, 413, 414, 415, 422, 428, 429, 431]
#: What would end the fuzzing user's session mid-run.
SESSION_ENDING = r"^/auth/(logout|sessions/\{session_id\})$"
#: What can take the administrator's own power away (its role assignment, the role itself): as
#: the administrator these run last, else the rest of the pass would run as a member.
ROLE_CHANGES = r"^/(users/\{user_id\}/roles/\{role_id\}|roles/\{role_id\})$"
#: Concurrent requests: one. With two worker threads CPython 3.11.7 (this machine's) sometimes
#: raised a spurious SystemError inside schemathesis ("AST constructor recursion depth
#: mismatch", the interpreter bug of python/cpython#106905), failing a clean run; one worker
#: costs CI's subset no measurable time.
DEFAULT_WORKERS = 1
#: schemathesis's phases, in the order it runs them.
PHASES = ("examples", "coverage", "fuzzing", "stateful")
#: Who the long run fuzzes as.
PASSES = ("administrator", "member", "anonymous")
PASSWORD = "correct horse battery"


@dataclass
class FuzzTotals:
    """What a run sent and what it found."""

    cases: int = 0
    server_errors: int = 0
    #: Requests that got no answer within the request timeout (a hang) or no answer at all.
    unanswered: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    #: Cases per operation ("POST /channels") and per phase.
    operations: Counter[str] = field(default_factory=Counter)
    phases: Counter[str] = field(default_factory=Counter)
    #: How many times each check ran (passed or failed).
    checks: Counter[str] = field(default_factory=Counter)
    #: The stateful phase's links between operations (inferred from the answers), and used.
    links_inferred: int = 0
    links: int = 0

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
        self.unanswered += other.unanswered
        self.failures.update(other.failures)
        self.examples.extend(other.examples)
        self.errors.extend(other.errors)
        self.statuses.update(other.statuses)
        self.operations.update(other.operations)
        self.phases.update(other.phases)
        self.checks.update(other.checks)
        self.links_inferred = max(self.links_inferred, other.links_inferred)
        self.links = max(self.links, other.links)

    @property
    def clean(self) -> bool:
        """Nothing found: no 5xx, no hang, no failed check, no engine error."""
        return not (self.server_errors or self.unanswered or self.failures or self.errors)

    def summary(self) -> str:
        """One paragraph for a person."""
        found = ", ".join(f"{name} {count}" for name, count in sorted(self.failures.items()))
        statuses = " ".join(f"{code}:{n}" for code, n in sorted(self.statuses.items()))
        return (
            f"cases {self.cases}, 5xx {self.server_errors}, unanswered {self.unanswered}, "
            f"schema violations {self.schema_violations}, failed checks "
            f"{sum(self.failures.values())} ({found or 'none'}); statuses {statuses}"
        )


def fuzz(
    base_url: str,
    *,
    token: str | None,
    max_examples: int,
    seed: int | None = None,
    workers: int = DEFAULT_WORKERS,
    phases: tuple[str, ...] = PHASES,
    max_response_time: float | None = None,
    path_regex: str | None = None,
    exclude_regex: str | None = None,
) -> FuzzTotals:
    """Run schemathesis once over every operation of `base_url`'s OpenAPI document.

    Args:
        base_url: the live server.
        token: an access token to send as `Authorization: Bearer` (None: no credentials).
        max_examples: cases per operation and phase (schemathesis's `max-examples`).
        seed: for a reproducible run.
        workers: concurrent requests.
        phases: schemathesis phases to run.
        max_response_time: seconds; a slower answer fails the `max_response_time` check (the
            long run's hang detector; None in CI, which asserts no timings).
        path_regex: only the operations whose path matches (to chase one finding).
        exclude_regex: leave out the operations whose path matches.
    """
    settings: dict[str, Any] = {
        "workers": workers,
        "request-timeout": 10,
        "generation": {"max-examples": max_examples, "mode": "all", "database": "none"},
        "checks": {
            **{name: {"enabled": False} for name in EXCLUDED_CHECKS},
            # Refusals also come from the HTTP limits before any route (api/http_limits.py).
            "negative_data_rejection": {"expected-statuses": REFUSALS},
            **({"max_response_time": max_response_time} if max_response_time else {}),
        },
        "phases": {name: {"enabled": name in phases} for name in PHASES},
        "warnings": False,
        "output": {"sanitization": {"enabled": False}},
    }
    if seed is not None:
        settings["seed"] = seed
    if token is not None:
        settings["headers"] = {"Authorization": f"Bearer {token}"}
    config = SchemathesisConfig.from_dict(settings)
    schema: BaseSchema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)
    if token is not None:
        schema = schema.exclude(path_regex=SESSION_ENDING)
    if path_regex is not None:
        schema = schema.include(path_regex=path_regex)
    if exclude_regex is not None:
        schema = schema.exclude(path_regex=exclude_regex)
    totals = FuzzTotals()
    for event in from_schema(schema).execute():
        recorder = getattr(event, "recorder", None)
        if recorder is not None:
            _count(recorder, str(getattr(event, "phase", "")), totals)
        elif isinstance(event, PhaseStarted) and isinstance(event.payload, StatefulPhasePayload):
            totals.links_inferred = event.payload.inferred_transitions
            totals.links = event.payload.transitions_selected
        elif isinstance(event, NonFatalError):
            totals.errors.append(f"{event.label}: {event.value!r}")
        elif isinstance(event, FatalError):
            totals.errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, EngineFinished):
            break
    return totals


def _count(recorder: Any, phase: str, totals: FuzzTotals) -> None:
    phase = phase.rsplit(".", 1)[-1].lower()
    for case_id, interaction in recorder.interactions.items():
        totals.cases += 1
        totals.phases[phase] += 1
        node = recorder.cases.get(case_id)
        totals.operations[node.value.operation.label if node else recorder.label] += 1
        response = interaction.response
        if response is None:
            totals.unanswered += 1
            continue
        totals.statuses[response.status_code] += 1
        if response.status_code >= 500:
            totals.server_errors += 1
    for case_id, checks in recorder.checks.items():
        for check in checks:
            totals.checks[check.name] += 1
            if check.status != Status.FAILURE:
                continue
            totals.failures[check.name] += 1
            if len(totals.examples) < 20 and check.failure_info is not None:
                totals.examples.append(_example(recorder, case_id, check))


def _example(recorder: Any, case_id: str, check: Any) -> str:
    """A failed check as a person reads it: what failed, the request, what came back."""
    failure = check.failure_info.failure
    interaction = recorder.interactions.get(case_id)
    answer = ""
    if interaction is not None and interaction.response is not None:
        response = interaction.response
        body = response.content[:400].decode(errors="replace")
        answer = f"\nanswered {response.status_code}: {body}"
    steps = [step.curl for step in check.failure_info.steps] or [check.failure_info.code_sample]
    requests = "\n".join(steps)
    title = f"{check.name} on {recorder.label}: {failure.title}"
    return f"{title}\n{failure.message}\n{requests}{answer}"


def register_admin(base_url: str, username: str = "fuzz-admin") -> str:
    """Register a user (the first one is the administrator) and return an access token."""
    response = httpx.post(
        f"{base_url}/auth/register",
        json={"username": username, "password": PASSWORD},
        timeout=30,
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def sign_in(base_url: str, username: str) -> str:
    """A fresh access token for a registered user (waiting out a login limit the fuzzing hit)."""
    deadline = time.monotonic() + 600
    while True:
        response = httpx.post(
            f"{base_url}/auth/login",
            json={"username": username, "password": PASSWORD},
            timeout=30,
        )
        if response.status_code != 429 or time.monotonic() > deadline:
            response.raise_for_status()
            token: str = response.json()["access_token"]
            return token
        time.sleep(min(60, int(response.headers.get("retry-after", "5"))))


def fuzz_both_ways(base_url: str, *, max_examples: int, seed: int | None = None) -> FuzzTotals:
    """An authenticated pass and an anonymous one, added up."""
    totals = fuzz(base_url, token=register_admin(base_url), max_examples=max_examples, seed=seed)
    totals.add(fuzz(base_url, token=None, max_examples=max_examples, seed=seed))
    return totals


@contextmanager
def _held(lock_path: str | None) -> Iterator[None]:
    """Hold `lock_path` (flock(2), as `flock(1)` takes it) for one chunk, if given."""
    if lock_path is None:
        yield
        return
    with Path(lock_path).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class LongRun:
    """What `scripts/fuzz.sh` was asked to do."""

    base_url: str
    max_examples: int
    seed: int | None
    passes: tuple[str, ...]
    phases: tuple[str, ...]
    max_response_time: float
    lock: str | None
    path_regex: str | None = None


def long_run(run: LongRun) -> dict[str, FuzzTotals]:
    """Every pass, phase by phase (a chunk each, under the lock); totals per pass."""
    users = {"administrator": "fuzz-admin", "member": "fuzz-member"}
    for username in users.values():
        register_admin(run.base_url, username)
    results: dict[str, FuzzTotals] = {}
    for who in run.passes:
        results[who] = FuzzTotals()
        chunks: list[tuple[str, str | None, str | None]] = [(p, None, None) for p in run.phases]
        if who == "administrator":
            chunks = [(phase, None, ROLE_CHANGES) for phase in run.phases]
            chunks += [(phase, ROLE_CHANGES, None) for phase in run.phases]
        for phase, only, without in chunks:
            if run.path_regex is not None:
                only = run.path_regex if only is None else only
            with _held(run.lock):
                started = time.monotonic()
                token = sign_in(run.base_url, users[who]) if who in users else None
                chunk = fuzz(
                    run.base_url,
                    token=token,
                    max_examples=run.max_examples,
                    seed=run.seed,
                    phases=(phase,),
                    max_response_time=run.max_response_time,
                    path_regex=only,
                    exclude_regex=without,
                )
                elapsed = time.monotonic() - started
            results[who].add(chunk)
            part = " (role changes)" if only == ROLE_CHANGES else ""
            sys.stdout.write(f"fuzz {who} {phase}{part}: {chunk.summary()}; {elapsed:.0f} s\n")
            sys.stdout.flush()
    return results


def _serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "VOICECHAT_DATA_DIR": str(data_dir),
        "VOICECHAT_PORT": str(port),
        "VOICECHAT_MEDIA_PORT": "0",
        "VOICECHAT_LOG_FORMAT": "json",
        # One client signs many users up and logs in very often; the limits are tested elsewhere.
        "VOICECHAT_RATE_LIMIT_REGISTER_IP": "100000/hour",
        "VOICECHAT_REGISTRATION": "open",
        # Mail is queued for a server that is not there (port 9 refuses): the account routes
        # answer as with SMTP configured; what an SMTP outage does is tests/accounts' job.
        "VOICECHAT_SMTP_URL": "smtp://127.0.0.1:9",
        # A chunk may wait long for the lock; it signs in again anyway.
        "VOICECHAT_ACCESS_TOKEN_TTL": "3600",
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
    parser.add_argument("--passes", default=",".join(PASSES), help="comma-separated")
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated")
    parser.add_argument("--max-response-time", type=float, default=5.0, help="seconds")
    parser.add_argument("--lock", help="a lock file to hold during each chunk (flock)")
    parser.add_argument("--report", type=Path, help="write the totals here as JSON")
    parser.add_argument("--path-regex", help="only the operations whose path matches")
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
        run = LongRun(
            base_url=base_url,
            max_examples=args.max_examples,
            seed=args.seed,
            passes=tuple(args.passes.split(",")),
            phases=tuple(args.phases.split(",")),
            max_response_time=args.max_response_time,
            lock=args.lock,
            path_regex=args.path_regex,
        )
        try:
            results = long_run(run)
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)
                log = (Path(scratch) / "serve.log").read_text(errors="replace")
                if "Traceback" in log:
                    sys.stdout.write("serve.log has a traceback:\n" + log[-4000:] + "\n")
    totals = FuzzTotals()
    for result in results.values():
        totals.add(result)
    for example in totals.examples:
        sys.stdout.write(f"{example if len(example) < 4000 else example[:4000] + '…'}\n\n")
    for error in totals.errors:
        sys.stdout.write(f"error: {error}\n")
    for who, result in results.items():
        sys.stdout.write(f"fuzz {who}: {result.summary()}\n")
    sys.stdout.write("cases per operation: " + _per_operation(totals) + "\n")
    sys.stdout.write("cases per phase: " + json.dumps(dict(totals.phases)) + "\n")
    sys.stdout.write(f"stateful links: {totals.links} ({totals.links_inferred} inferred)\n")
    sys.stdout.write("checks run: " + json.dumps(dict(sorted(totals.checks.items()))) + "\n")
    sys.stdout.write(f"fuzz: {totals.summary()}; {time.monotonic() - started:.0f} s\n")
    if args.report is not None:
        report = {who: _as_json(result) for who, result in results.items()}
        args.report.write_text(json.dumps(report, indent=1, default=str))
    return 0 if totals.clean else 1


def _as_json(totals: FuzzTotals) -> dict[str, Any]:
    # dataclasses.asdict would rebuild each Counter from its (key, value) pairs, counting them.
    return {
        name: dict(value) if isinstance(value, Counter) else value
        for name, value in vars(totals).items()
    }


def _per_operation(totals: FuzzTotals) -> str:
    counts = sorted(totals.operations.values())
    if not counts:
        return "none"
    return (
        f"{len(counts)} operations, min {counts[0]}, median {counts[len(counts) // 2]}, "
        f"max {counts[-1]}; "
        + ", ".join(f"{label} {n}" for label, n in sorted(totals.operations.items()))
    )


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
