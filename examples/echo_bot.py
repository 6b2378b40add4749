"""A bot that answers `!ping` with `pong` and echoes `!echo <text>` in any channel it can see.

    python examples/echo_bot.py http://127.0.0.1:8080 botname 'bot password'

The account is registered on first run. The SDK reconnects (and re-authenticates) by itself
when the server restarts.
"""

from __future__ import annotations

import asyncio
import sys

from voicechat.sdk import AuthError, Client


async def main(url: str, username: str, password: str) -> None:
    async with Client(url, user_agent="echo-bot/1.0") as chat:
        try:
            await chat.login(username, password)
        except AuthError:
            await chat.register(username, password, display_name="Echo bot")
        print(f"logged in as {chat.user.username if chat.user else username}")  # noqa: T201
        async for event in chat.events():
            if event.method != "message.new":
                continue
            message = event.params
            if message["author"]["id"] == str(chat.user.id if chat.user else ""):
                continue
            text = message.get("content") or ""
            if text == "!ping":
                await chat.send(message["channel_id"], "pong", reply_to=message["id"])
            elif text.startswith("!echo "):
                await chat.send(message["channel_id"], text.removeprefix("!echo "))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    asyncio.run(main(*sys.argv[1:4]))
