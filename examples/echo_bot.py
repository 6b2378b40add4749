"""A bot that answers `!ping` with `pong` and echoes `!echo <text>` in any channel it can see.

    VOICECHAT_BOT_TOKEN=vcb_... python examples/echo_bot.py http://127.0.0.1:8080

It runs as a bot account (docs/accounts.md "Bots"): someone with `manage_bots` creates one with
`POST /bots` (or `Client.create_bot`) and hands over the token, which is read from the
environment rather than the command line (where `ps` would show it). The SDK reconnects (and
re-authenticates) by itself when the server restarts.
"""

from __future__ import annotations

import asyncio
import os
import sys

from voicechat.sdk import Client


async def main(url: str, bot_token: str) -> None:
    async with Client(url, user_agent="echo-bot/1.0", bot_token=bot_token) as chat:
        me = await chat.me()
        print(f"running as {me.username}")  # noqa: T201
        async for event in chat.events():
            if event.method != "message.new":
                continue
            message = event.params
            if message["author"]["id"] == str(me.id):
                continue
            text = message.get("content") or ""
            if text == "!ping":
                await chat.send(message["channel_id"], "pong", reply_to=message["id"])
            elif text.startswith("!echo "):
                await chat.send(message["channel_id"], text.removeprefix("!echo "))


if __name__ == "__main__":
    token = os.environ.get("VOICECHAT_BOT_TOKEN")
    if len(sys.argv) != 2 or not token:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], token))
