"""The client application model's event path: `message.new` events applied to a loaded
timeline by `AppSession` (validation, de-duplication, sorted insert, the change notification
and the GUI's redraw read of `entries` every 50 events), against only validating the same
events into `Message` models, in the same run.

The ratio is what the application model adds on top of parsing. No server: the session is
built around a client that is never connected. Run: `scripts/bench.sh -k client_timeline`.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uuid_utils

from voicechat.sdk import Client
from voicechat.sdk.app import AppSession, Change, ClientSettings, TokenStore
from voicechat.sdk.gateway import GatewayEvent
from voicechat.sdk.models import Message

EVENTS = 2000


def _events(channel_id: str) -> list[dict[str, Any]]:
    author = {"id": str(uuid.uuid4()), "username": "bot", "display_name": None,
              "avatar_url": None, "status": "online"}  # fmt: skip
    return [
        {
            "id": str(uuid_utils.uuid7()),
            "channel_id": channel_id,
            "author": author,
            "content": f"message {n} " + "x" * 80,
            "encrypted": None,
            "nonce": uuid.uuid4().hex,
            "reply_to": None,
            "attachments": [],
            "edited_at": None,
            "created_at": datetime.now(UTC).isoformat(),
        }
        for n in range(EVENTS)
    ]


@pytest.fixture
def channel_id() -> str:
    return str(uuid.uuid4())


def test_reference_validate_only(benchmark: Any, channel_id: str) -> None:
    events = _events(channel_id)

    def run() -> None:
        for params in events:
            Message.model_validate(params)

    benchmark(run)
    benchmark.extra_info["events"] = EVENTS


def test_session_applies_message_events(benchmark: Any, channel_id: str, tmp_path: Path) -> None:
    events = [GatewayEvent("message.new", p) for p in _events(channel_id)]
    loop = asyncio.new_event_loop()
    client = Client("http://127.0.0.1:9")  # never contacted
    session = AppSession(
        client, ClientSettings.load(tmp_path), tokens=TokenStore(tmp_path, backend="file")
    )
    redraws = 0

    def redraw(change: Change) -> None:
        nonlocal redraws
        redraws += 1
        if redraws % 50 == 0:
            session.timeline(channel_id).entries  # noqa: B018 (what a redraw reads)

    session.subscribe(redraw)

    async def apply() -> None:
        session.conversations.forget_all()
        timeline = session.timeline(channel_id)
        timeline.loaded = True
        for event in events:
            await session.events.apply(event)
        assert len(timeline.messages) == EVENTS

    try:
        benchmark(lambda: loop.run_until_complete(apply()))
    finally:
        loop.run_until_complete(client.close())
        loop.close()
    benchmark.extra_info["events"] = EVENTS
