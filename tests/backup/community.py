"""A small community built over HTTP, and everything it reads back, for the restore drills."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyotp

from tests.files.conftest import PNG
from tests.utils.auth import DEFAULT_PASSWORD, bearer
from tests.utils.devices import TestDevice

CIPHERTEXT = {
    "algorithm": "m.megolm.v1.aes-sha2",
    "ciphertext": "AwgAEhCk3rn1X2mD0pq+opaque-megolm-bytes",
    "sender_key": "curve25519:drill-sender",
    "session_id": "drill-session-1",
    "device_id": "DRILLDEV",
}
#: Texts that must never show in an archive's bytes.
SECRET_MESSAGE = "the drill's secret plaintext 7f3a9c"
FILE_MARKER = b"drill-file-plaintext-4b1d"


@dataclass
class Community:
    """Who was made, with what they need to sign in again."""

    passwords: dict[str, str] = field(default_factory=dict)
    totp: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    file_bytes: dict[str, bytes] = field(default_factory=dict)
    #: The access tokens of registration, for reading before the backup: a TOTP login there
    #: would spend the step the drill's login after the restore needs (codes never replay).
    tokens: dict[str, str] = field(default_factory=dict)


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def build_community(http: httpx.Client) -> Community:
    """Users (one with TOTP), a role, public, private and encrypted channels, plain and
    encrypted messages, device keys, files and an avatar."""
    made = Community()
    tokens: dict[str, str] = {}
    for name in ("admin", "alice", "bob", "carol"):
        body = _ok(
            http.post("/auth/register", json={"username": name, "password": DEFAULT_PASSWORD}),
            201,
        )
        made.passwords[name] = DEFAULT_PASSWORD
        made.ids[name] = body["user"]["id"]
        tokens[name] = body["access_token"]
    made.tokens = dict(tokens)
    auth = {name: bearer(token) for name, token in tokens.items()}
    setup = _ok(http.post("/auth/mfa/setup", headers=auth["alice"]))
    made.totp["alice"] = setup["secret"]
    code = pyotp.TOTP(setup["secret"]).now()
    _ok(http.post("/auth/mfa/verify", headers=auth["alice"], json={"code": code}))

    role = _ok(
        http.post(
            "/roles",
            headers=auth["admin"],
            json={"name": "Moderators", "color": 0x3498DB, "permissions": ["manage_messages"]},
        ),
        201,
    )
    assert http.put(f"/users/{made.ids['alice']}/roles/{role['id']}", headers=auth["admin"])
    general = _ok(
        http.post("/channels", headers=auth["admin"], json={"name": "general", "type": "text"}), 201
    )
    staff = _ok(
        http.post(
            "/channels",
            headers=auth["admin"],
            json={"name": "staff", "type": "text", "private": True},
        ),
        201,
    )
    for member in ("alice",):
        response = http.put(
            f"/channels/{staff['id']}/members/{made.ids[member]}", headers=auth["admin"]
        )
        assert response.status_code == 204, response.text
    vault = _ok(
        http.post(
            "/channels",
            headers=auth["admin"],
            json={"name": "vault", "type": "text", "encrypted": True},
        ),
        201,
    )

    for index in range(25):
        author = ("alice", "bob", "carol")[index % 3]
        content = SECRET_MESSAGE if index == 7 else f"message {index} from {author}"
        _ok(
            http.post(
                f"/channels/{general['id']}/messages",
                headers=auth[author],
                json={"content": content},
            ),
            201,
        )
    _ok(
        http.post(
            f"/channels/{staff['id']}/messages",
            headers=auth["alice"],
            json={"content": "staff only: the plan"},
        ),
        201,
    )
    for index in range(2):
        _ok(
            http.post(
                f"/channels/{vault['id']}/messages",
                headers=auth["bob"],
                json={**CIPHERTEXT, "session_id": f"drill-session-{index}"},
            ),
            201,
        )

    report = FILE_MARKER + os.urandom(150_000)
    upload = _ok(
        http.post(
            "/upload",
            headers=auth["alice"],
            files={"file": ("report.bin", report, "application/octet-stream")},
            data={"channel_id": general["id"]},
        ),
        201,
    )
    made.file_bytes[upload["id"]] = report
    _ok(
        http.post(
            f"/channels/{general['id']}/messages",
            headers=auth["alice"],
            json={"content": "the report", "attachments": [upload["id"]]},
        ),
        201,
    )
    avatar = _ok(
        http.post("/upload", headers=auth["bob"], files={"file": ("me.png", PNG, "image/png")}), 201
    )
    made.file_bytes[avatar["id"]] = PNG
    _ok(http.patch("/users/@me", headers=auth["bob"], json={"avatar": avatar["id"]}))

    for name in ("alice", "bob"):
        device = TestDevice(made.ids[name])
        _ok(
            http.post(
                "/keys/upload",
                headers=auth[name],
                json={
                    "device_keys": device.device_keys(),
                    "one_time_keys": device.one_time_keys(3),
                    "fallback_key": device.fallback_key(),
                },
            )
        )
    return made


def sign_in(http: httpx.Client, made: Community, name: str) -> dict[str, str]:
    """Log in with the password (and, for those with MFA, a TOTP code); the auth header."""
    body = _ok(http.post("/auth/login", json={"username": name, "password": made.passwords[name]}))
    if name in made.totp:
        assert body["mfa_required"] is True
        # The next step's code: the step of the set-up code is spent (codes never replay).
        code = pyotp.TOTP(made.totp[name]).at(time.time() + 30)
        body = _ok(
            http.post("/auth/mfa/verify", json={"mfa_token": body["mfa_token"], "code": code})
        )
    return bearer(body["access_token"])


def read_back(http: httpx.Client, made: Community, *, sign_in_again: bool) -> dict[str, Any]:
    """Everything each user sees: profiles, roles, channels, every message page, devices,
    file bytes. Two instances holding the same data read back equal.

    With `sign_in_again` each user logs in (password, and TOTP for alice) first; else the
    registration tokens are used.
    """
    seen: dict[str, Any] = {}
    for name in made.passwords:
        auth = sign_in(http, made, name) if sign_in_again else bearer(made.tokens[name])
        view: dict[str, Any] = {
            "me": _ok(http.get("/users/@me", headers=auth)),
            "users": _ok(http.get("/users", headers=auth)),
            "roles": _ok(http.get("/roles", headers=auth)),
            "channels": _ok(http.get("/channels", headers=auth)),
            "devices": _ok(http.get("/keys/devices", headers=auth)),
            "keys": _ok(
                http.post("/keys/query", headers=auth, json={"user_ids": list(made.ids.values())})
            ),
        }
        pages: dict[str, list[Any]] = {}
        for channel in view["channels"]:
            before: str | None = None
            chunks: list[Any] = []
            while True:
                params: dict[str, str | int] = {"limit": 10}
                if before:
                    params["before"] = before
                page = _ok(
                    http.get(f"/channels/{channel['id']}/messages", headers=auth, params=params)
                )
                chunks.append(page)
                if not page["has_more"]:
                    break
                before = page["messages"][-1]["id"]
            pages[channel["name"]] = chunks
        view["pages"] = pages
        files: dict[str, str] = {}
        for file_id in made.file_bytes:
            response = http.get(f"/files/{file_id}", headers=auth)
            files[file_id] = (
                str(response.status_code)
                + ":"
                + (response.content.hex() if response.status_code == 200 else "")
            )
        view["files"] = files
        # Whether a device is the one of the asking session differs after a fresh login (the
        # devices were registered by the sessions of registration); the rest must not.
        for device in view["devices"]:
            device.pop("current", None)
        seen[name] = view
    return seen


def differences(before: Any, after: Any, path: str = "") -> list[str]:
    """Where two read-backs differ (paths like `bob.me.status`), for a readable failure."""
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[str] = []
        for key in sorted(set(before) | set(after), key=str):
            found += differences(before.get(key), after.get(key), f"{path}.{key}")
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        found = []
        for index, (one, other) in enumerate(zip(before, after, strict=True)):
            found += differences(one, other, f"{path}[{index}]")
        return found
    return [] if before == after else [f"{path}: {before!r:.80} != {after!r:.80}"]
