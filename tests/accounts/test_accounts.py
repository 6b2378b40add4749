"""Password change and reset by mail, email verification, deletion and export, against a
real SMTP server (tests/accounts/conftest.py)."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.accounts.conftest import SmtpServer, token_of
from tests.utils.auth import DEFAULT_PASSWORD, ApiUser, bearer, register


async def _login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/auth/login", json={"username": username, "password": password})


async def test_forgot_then_reset_works_once_and_ends_sessions(
    client: httpx.AsyncClient, smtp: SmtpServer, admin: ApiUser
) -> None:
    tokens = await register(client, "carol", email="carol@example.org")
    answer = await client.post("/auth/password/forgot", json={"email": "carol@example.org"})
    assert answer.status_code == 202
    unknown = await client.post("/auth/password/forgot", json={"email": "nobody@example.org"})
    assert unknown.status_code == 202
    (mail,) = await smtp.mailbox.wait_for("carol@example.org")
    assert "https://chat.example.org/reset-password?token=" in str(mail.get_payload())
    token = token_of(mail)

    reset = await client.post(
        "/auth/password/reset", json={"token": token, "new_password": "a new password 1"}
    )
    assert reset.status_code == 204, reset.text
    # Every session ended, the old password is refused, the new one works.
    me = await client.get("/users/@me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 401
    assert (await _login(client, "carol", DEFAULT_PASSWORD)).status_code == 401
    assert (await _login(client, "carol", "a new password 1")).status_code == 200

    again = await client.post(
        "/auth/password/reset", json={"token": token, "new_password": "another password"}
    )
    assert again.status_code == 410
    assert again.json()["error"]["code"] == "account_token_used"
    bogus = await client.post(
        "/auth/password/reset", json={"token": "not-a-token", "new_password": "another password"}
    )
    assert bogus.status_code == 400
    assert bogus.json()["error"]["code"] == "account_token_invalid"
    await asyncio.sleep(0.5)
    assert not [m for m in smtp.mailbox.messages if m["To"] == "nobody@example.org"]


async def test_change_password_ends_other_sessions(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    other = (await _login(client, "alice", DEFAULT_PASSWORD)).json()
    wrong = await alice.post(
        "/auth/password",
        json={"current_password": "not it at all", "new_password": "brand new password"},
    )
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "wrong_password"
    changed = await alice.post(
        "/auth/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": "brand new password"},
    )
    assert changed.status_code == 204, changed.text
    assert (await alice.get("/users/@me")).status_code == 200
    ended = await client.get("/users/@me", headers=bearer(other["access_token"]))
    assert ended.status_code == 401
    assert (await _login(client, "alice", DEFAULT_PASSWORD)).status_code == 401


async def test_email_verification(
    client: httpx.AsyncClient, smtp: SmtpServer, alice: ApiUser
) -> None:
    answer = await alice.post("/users/@me/email", json={"email": "alice@example.org"})
    assert answer.status_code == 202, answer.text
    me = (await alice.get("/users/@me")).json()
    assert me["email"] == "alice@example.org"
    assert me["email_verified"] is False
    (mail,) = await smtp.mailbox.wait_for("alice@example.org")
    verified = await client.post("/auth/email/verify", json={"token": token_of(mail)})
    assert verified.status_code == 204, verified.text
    assert (await alice.get("/users/@me")).json()["email_verified"] is True


async def test_mail_queued_while_smtp_is_down_is_delivered_later(
    client: httpx.AsyncClient, smtp: SmtpServer, admin: ApiUser
) -> None:
    await register(client, "dave", email="dave@example.org")
    smtp.stop()
    answer = await client.post("/auth/password/forgot", json={"username": "dave"})
    assert answer.status_code == 202
    await asyncio.sleep(1.5)  # at least one delivery attempt fails meanwhile
    smtp.start()
    (mail,) = await smtp.mailbox.wait_for("dave@example.org", within=30)
    assert token_of(mail)


async def test_delete_account_and_export(
    client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser
) -> None:
    channel = await admin.channel(name="general")
    sent = await alice.post(f"/channels/{channel['id']}/messages", json={"content": "hello"})
    assert sent.status_code in (200, 201), sent.text

    export = await alice.get("/users/@me/export")
    assert export.status_code == 200
    archive = json.loads(export.content)
    assert archive["profile"]["username"] == "alice"
    assert [m["content"] for m in archive["messages"]] == ["hello"]
    assert archive["sessions"]

    wrong = await client.request(
        "DELETE", "/users/@me", headers=alice.headers, json={"password": "not the password"}
    )
    assert wrong.status_code == 403
    deleted = await client.request(
        "DELETE", "/users/@me", headers=alice.headers, json={"password": DEFAULT_PASSWORD}
    )
    assert deleted.status_code == 204, deleted.text
    assert (await alice.get("/users/@me")).status_code == 401
    login = await _login(client, "alice", DEFAULT_PASSWORD)
    assert login.status_code == 401
    assert login.json()["error"]["code"] == "account_deleted"
    page = (await admin.get(f"/channels/{channel['id']}/messages")).json()
    assert page["messages"][0]["author"]["username"] == "deleted-user"
    # The username stays taken during the grace period.
    taken = await client.post(
        "/auth/register", json={"username": "alice", "password": DEFAULT_PASSWORD}
    )
    assert taken.status_code == 409
