"""examples/echo_bot.py runs as a bot account against a live server and answers; the SDK's bot
and administration methods against the same server (one server start for both: CI time)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD
from voicechat.sdk import AuthError, Client

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "echo_bot.py"


def test_echo_bot_answers_as_a_bot(live_server: LiveServer, tmp_path: Path) -> None:
    with httpx.Client(base_url=live_server.base_url, timeout=10) as http:
        owner = http.post(
            "/auth/register", json={"username": "owner", "password": DEFAULT_PASSWORD}
        ).json()
        headers = {"Authorization": f"Bearer {owner['access_token']}"}
        made = http.post("/bots", json={"username": "echo-bot"}, headers=headers).json()
        channel = http.post(
            "/channels", json={"type": "text", "name": "general"}, headers=headers
        ).json()
        log_path = tmp_path / "echo-bot.log"
        with log_path.open("wb") as log:
            bot = subprocess.Popen(
                [sys.executable, str(EXAMPLE), live_server.base_url],
                env={**os.environ, "VOICECHAT_BOT_TOKEN": made["token"]},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 30
            answer = None
            sent: str | None = None
            while answer is None and time.monotonic() < deadline:
                assert bot.poll() is None, log_path.read_text()
                if sent is None and "running as echo-bot" in log_path.read_text():
                    # Give the gateway a moment to subscribe, then ask; asked again if lost.
                    time.sleep(0.5)
                    sent = http.post(
                        f"/channels/{channel['id']}/messages",
                        json={"content": "!ping"},
                        headers=headers,
                    ).json()["id"]
                time.sleep(0.2)
                page = http.get(f"/channels/{channel['id']}/messages", headers=headers).json()
                items = page["messages"] if isinstance(page, dict) else page
                answer = next((m for m in items if m["content"] == "pong"), None)
            assert answer is not None, log_path.read_text()
            assert answer["author"]["id"] == made["bot"]["id"]
            assert answer["reply_to"] == sent
        finally:
            bot.terminate()
            bot.wait(10)
    asyncio.run(_sdk_bots_and_administration(live_server.base_url, made["bot"]["id"]))


async def _sdk_bots_and_administration(url: str, echo_bot_id: str) -> None:
    async with Client(url) as owner:
        await owner.login("owner", DEFAULT_PASSWORD)
        made = await owner.create_bot("sdk-bot", display_name="SDK bot")
        assert {b["username"] for b in await owner.bots()} == {"echo-bot", "sdk-bot"}
        async with Client(url, bot_token=made["token"]) as bot:
            me = await bot.me()
            assert me.bot
            assert me.username == "sdk-bot"
            rotated = await owner.new_bot_token(made["bot"]["id"])
            with pytest.raises(AuthError) as refused:
                await bot.me()
            assert refused.value.code == "invalid_bot_token"
            bot.bot_token = rotated["token"]
            assert (await bot.me()).username == "sdk-bot"
        await owner.delete_bot(made["bot"]["id"])
        page = await owner.admin_users("bot")
        assert [u["username"] for u in page["users"]] == ["echo-bot"]
        updated = await owner.admin_update_user(echo_bot_id, disabled=True)
        assert updated["disabled"] is True
