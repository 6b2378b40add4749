"""Auth costs, each against a reference measured in the same run.

- Login throughput on one worker (one event loop, in-process ASGI) against raw argon2-cffi
  verifications per second with the same parameters: how close login gets to the floor the
  password hash sets.
- Token verification per request: the same tiny route with and without `CurrentUser`
  (EdDSA verify + one Valkey round trip for the session), as a ratio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from fastapi import APIRouter

from benches.harness import Harness
from tests.utils.auth import DEFAULT_PASSWORD, bearer
from voicechat.api import create_app
from voicechat.api.deps import CurrentUser
from voicechat.auth.passwords import MEMORY_KIB, PARALLELISM, TIME_COST
from voicechat.settings import Settings

LOGINS_PER_ROUND = 8

probe = APIRouter(prefix="/_bench")


@probe.get("/anonymous")
async def anonymous() -> dict[str, str]:
    return {"ok": "yes"}


@probe.get("/authenticated")
async def authenticated(caller: CurrentUser) -> dict[str, str]:
    return {"ok": str(caller.user_id)}


@pytest.fixture
def harness(settings: Settings) -> Iterator[Harness]:
    # Limits off the critical path: the benchmark measures work, not refusals.
    app = create_app(
        settings.model_copy(
            update={"rate_limit_login": "100000/minute", "rate_limit_login_ip": "100000/minute"}
        )
    )
    app.include_router(probe)
    h = Harness(app)
    response = h.run(
        h.client.post("/auth/register", json={"username": "bench", "password": DEFAULT_PASSWORD})
    )
    assert response.status_code == 201
    h.token = response.json()["access_token"]  # type: ignore[attr-defined]
    yield h
    h.close()


@pytest.mark.benchmark(group="login-throughput")
def test_login_round_of_concurrent_logins(benchmark, harness: Harness) -> None:  # type: ignore[no-untyped-def]
    async def round_of_logins() -> list[int]:
        responses = await asyncio.gather(
            *(
                harness.client.post(
                    "/auth/login", json={"username": "bench", "password": DEFAULT_PASSWORD}
                )
                for _ in range(LOGINS_PER_ROUND)
            )
        )
        return [r.status_code for r in responses]

    statuses = benchmark.pedantic(lambda: harness.run(round_of_logins()), rounds=5, warmup_rounds=1)
    assert statuses == [200] * LOGINS_PER_ROUND
    benchmark.extra_info["logins_per_round"] = LOGINS_PER_ROUND


@pytest.mark.benchmark(group="login-throughput")
def test_reference_raw_argon2_verifications(benchmark) -> None:  # type: ignore[no-untyped-def]
    hasher = PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_KIB, parallelism=PARALLELISM)
    stored = hasher.hash(DEFAULT_PASSWORD)

    def round_of_verifications() -> None:
        for _ in range(LOGINS_PER_ROUND):
            hasher.verify(stored, DEFAULT_PASSWORD)

    benchmark.pedantic(round_of_verifications, rounds=5, warmup_rounds=1)
    benchmark.extra_info["logins_per_round"] = LOGINS_PER_ROUND


@pytest.mark.benchmark(group="token-verification")
def test_authenticated_request(benchmark, harness: Harness) -> None:  # type: ignore[no-untyped-def]
    headers = bearer(harness.token)  # type: ignore[attr-defined]
    response = benchmark(
        lambda: harness.run(harness.client.get("/_bench/authenticated", headers=headers))
    )
    assert response.status_code == 200


@pytest.mark.benchmark(group="token-verification")
def test_reference_unauthenticated_request(benchmark, harness: Harness) -> None:  # type: ignore[no-untyped-def]
    response = benchmark(lambda: harness.run(harness.client.get("/_bench/anonymous")))
    assert response.status_code == 200
