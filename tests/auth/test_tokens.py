"""Access tokens that must be refused with 401, whatever their defect."""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from uuid import UUID

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from tests.utils.auth import bearer, register


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
async def victim(client: httpx.AsyncClient, app: FastAPI) -> dict[str, Any]:
    tokens = await register(client, "victim")
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    private = app.state.resources.keys.jwt_private_key
    return {"tokens": tokens, "claims": claims, "private": private}


def _sign(claims: dict[str, Any], key: Ed25519PrivateKey) -> str:
    return jwt.encode(claims, key, algorithm="EdDSA")


async def _status(client: httpx.AsyncClient, token: str) -> int:
    response = await client.get("/users/@me", headers=bearer(token))
    if response.status_code == 401:
        assert response.json()["error"]["code"] in {"invalid_token", "session_revoked"}
    return response.status_code


async def test_the_genuine_token_works(client: httpx.AsyncClient, victim: dict[str, Any]) -> None:
    assert await _status(client, victim["tokens"]["access_token"]) == 200
    # A token we sign ourselves with the server key and the same claims works too: the
    # refusals below are about the defect each introduces, not about re-signing.
    assert await _status(client, _sign(victim["claims"], victim["private"])) == 200


async def test_alg_none_is_refused(client: httpx.AsyncClient, victim: dict[str, Any]) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(victim["claims"]).encode())
    assert await _status(client, f"{header}.{payload}.") == 401


async def test_hs256_signed_with_the_public_key_is_refused(
    client: httpx.AsyncClient, victim: dict[str, Any]
) -> None:
    public_pem = (
        victim["private"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(victim["claims"]).encode())
    import hashlib
    import hmac

    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert await _status(client, f"{header}.{payload}.{_b64(signature)}") == 401


@pytest.mark.parametrize(
    "change",
    [
        {"exp": int(time.time()) - 60},
        {"aud": "someone-else"},
        {"iss": "https://evil.example"},
        {"sid": None},
        {"jti": None},
    ],
    ids=["expired", "wrong-aud", "wrong-iss", "no-sid", "no-jti"],
)
async def test_defective_claims_are_refused(
    client: httpx.AsyncClient, victim: dict[str, Any], change: dict[str, Any]
) -> None:
    claims = {**victim["claims"], **change}
    claims = {k: v for k, v in claims.items() if v is not None}
    assert await _status(client, _sign(claims, victim["private"])) == 401


async def test_a_foreign_key_is_refused(client: httpx.AsyncClient, victim: dict[str, Any]) -> None:
    assert await _status(client, _sign(victim["claims"], Ed25519PrivateKey.generate())) == 401


async def test_a_tampered_payload_is_refused(
    client: httpx.AsyncClient, victim: dict[str, Any]
) -> None:
    header, _, signature = victim["tokens"]["access_token"].split(".")
    forged = {**victim["claims"], "sub": str(UUID(int=1))}
    payload = _b64(json.dumps(forged).encode())
    assert await _status(client, f"{header}.{payload}.{signature}") == 401


async def test_a_token_for_another_users_session_is_refused(
    client: httpx.AsyncClient, victim: dict[str, Any]
) -> None:
    other = await register(client, "other")
    other_claims = jwt.decode(other["access_token"], options={"verify_signature": False})
    # Validly signed, but the session belongs to someone else.
    claims = {**victim["claims"], "sid": other_claims["sid"]}
    assert await _status(client, _sign(claims, victim["private"])) == 401


async def test_a_revoked_sessions_token_is_refused(
    client: httpx.AsyncClient, victim: dict[str, Any]
) -> None:
    token = victim["tokens"]["access_token"]
    assert (await client.post("/auth/logout", headers=bearer(token))).status_code == 204
    assert await _status(client, token) == 401


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer not.a.jwt", "Basic dXNlcjpwdw=="])
async def test_missing_or_garbage_credentials(client: httpx.AsyncClient, header: str) -> None:
    response = await client.get("/users/@me", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.json()["error"]["code"] in {"missing_token", "invalid_token"}
