"""TOTP MFA: set-up, confirmation, login with a code, replay refusal, backup codes."""

from __future__ import annotations

import asyncpg
import httpx
import pyotp

from tests.utils.auth import DEFAULT_PASSWORD, bearer, register


async def _enable_mfa(client: httpx.AsyncClient, access: str) -> tuple[pyotp.TOTP, list[str]]:
    setup = await client.post("/auth/mfa/setup", headers=bearer(access))
    assert setup.status_code == 200, setup.text
    body = setup.json()
    assert body["otpauth_uri"].startswith("otpauth://totp/")
    totp = pyotp.TOTP(body["secret"])
    confirm = await client.post(
        "/auth/mfa/verify", headers=bearer(access), json={"code": totp.now()}
    )
    assert confirm.status_code == 200, confirm.text
    result = confirm.json()
    assert result["enabled"] is True
    assert len(result["backup_codes"]) == 10
    assert len(set(result["backup_codes"])) == 10
    return totp, result["backup_codes"]


async def _login(client: httpx.AsyncClient, username: str) -> str:
    response = await client.post(
        "/auth/login", json={"username": username, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["mfa_required"] is True
    assert "access_token" not in body
    return str(body["mfa_token"])


async def test_mfa_lifecycle(client: httpx.AsyncClient) -> None:
    tokens = await register(client, "mallory")
    totp, backup_codes = await _enable_mfa(client, tokens["access_token"])
    me = await client.get("/users/@me", headers=bearer(tokens["access_token"]))
    assert me.json()["mfa_enabled"] is True

    # The code used to confirm set-up cannot log in: its time step is spent.
    mfa_token = await _login(client, "mallory")
    replay = await client.post(
        "/auth/mfa/verify", json={"mfa_token": mfa_token, "code": totp.now()}
    )
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "invalid_mfa_code"

    # A backup code works once...
    first = await client.post(
        "/auth/mfa/verify", json={"mfa_token": mfa_token, "code": backup_codes[0].upper()}
    )
    assert first.status_code == 200, first.text
    assert first.json()["user"]["username"] == "mallory"
    mfa_token = await _login(client, "mallory")
    again = await client.post(
        "/auth/mfa/verify", json={"mfa_token": mfa_token, "code": backup_codes[0]}
    )
    assert again.status_code == 401
    # ...and the challenge it consumed is gone.
    used = await client.post(
        "/auth/mfa/verify", json={"mfa_token": "x" * 43, "code": backup_codes[1]}
    )
    assert used.status_code == 401
    assert used.json()["error"]["code"] == "invalid_mfa_token"


async def test_a_totp_code_logs_in_once(client: httpx.AsyncClient, database_url: str) -> None:
    tokens = await register(client, "niaj")
    totp, _ = await _enable_mfa(client, tokens["access_token"])
    # Forget the step the set-up spent, as if it had happened a minute ago.
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE users SET mfa_last_step = mfa_last_step - 2")
    finally:
        await conn.close()
    code = totp.now()
    mfa_token = await _login(client, "niaj")
    ok = await client.post("/auth/mfa/verify", json={"mfa_token": mfa_token, "code": code})
    assert ok.status_code == 200, ok.text
    mfa_token = await _login(client, "niaj")
    replay = await client.post("/auth/mfa/verify", json={"mfa_token": mfa_token, "code": code})
    assert replay.status_code == 401


async def test_wrong_codes_are_limited(client: httpx.AsyncClient) -> None:
    tokens = await register(client, "olivia")
    await _enable_mfa(client, tokens["access_token"])
    mfa_token = await _login(client, "olivia")
    responses = [
        await client.post("/auth/mfa/verify", json={"mfa_token": mfa_token, "code": "000000"})
        for _ in range(7)
    ]
    assert responses[0].status_code == 401
    limited = [r for r in responses if r.status_code == 429]
    assert limited, [r.status_code for r in responses]
    assert int(limited[0].headers["retry-after"]) > 0
    assert limited[0].json()["error"]["code"] == "rate_limited"


async def test_the_secret_is_encrypted_at_rest(
    client: httpx.AsyncClient, database_url: str
) -> None:
    tokens = await register(client, "peggy")
    setup = (await client.post("/auth/mfa/setup", headers=bearer(tokens["access_token"]))).json()
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval("SELECT mfa_secret FROM users WHERE username = 'peggy'")
        codes = await conn.fetch("SELECT code_hash FROM mfa_backup_codes")
    finally:
        await conn.close()
    assert stored is not None
    assert setup["secret"].encode() not in stored
    assert codes == []  # none until set-up is confirmed


async def test_disable_needs_a_code(client: httpx.AsyncClient) -> None:
    tokens = await register(client, "quinn")
    _, backup_codes = await _enable_mfa(client, tokens["access_token"])
    wrong = await client.post(
        "/auth/mfa/disable", headers=bearer(tokens["access_token"]), json={"code": "123456"}
    )
    assert wrong.status_code == 401
    ok = await client.post(
        "/auth/mfa/disable", headers=bearer(tokens["access_token"]), json={"code": backup_codes[3]}
    )
    assert ok.status_code == 204
    login = await client.post(
        "/auth/login", json={"username": "quinn", "password": DEFAULT_PASSWORD}
    )
    assert "access_token" in login.json()


async def test_confirm_without_setup_and_without_token(client: httpx.AsyncClient) -> None:
    tokens = await register(client, "rupert")
    early = await client.post(
        "/auth/mfa/verify", headers=bearer(tokens["access_token"]), json={"code": "123456"}
    )
    assert early.status_code == 400
    assert early.json()["error"]["code"] == "mfa_not_started"
    anonymous = await client.post("/auth/mfa/verify", json={"code": "123456"})
    assert anonymous.status_code == 401
