"""Moderation through the application model against a live server: the administrator's menu
offers ban and timeout on a member (and nothing on themself), a timeout reaches the member's
profile as the composer's hint, a ban ends the member's session saying so, and their next
login is refused with a sentence, not a traceback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.client.conftest import SessionFactory, headless_settings, until
from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD
from voicechat.sdk.app import AppSession, TokenStore, readable_error
from voicechat.sdk.app.moderation import (
    BANNED_TEXT,
    ModerationAction,
    timed_out_until,
    timeout_text,
)
from voicechat.sdk.app.state import Change
from voicechat.sdk.errors import ApiError


async def test_timeout_then_ban_as_the_member_sees_them(
    sessions: SessionFactory, server: LiveServer, home: Path
) -> None:
    admin = await sessions("mod")
    bob = await sessions("bob")
    await until(lambda: admin.state == "online" and bob.state == "online", "both online")
    await until(lambda: admin.moderation.roles, "the roles")
    assert bob.me is not None
    assert bob.me.id is not None
    assert admin.me is not None
    assert admin.me.id is not None
    assert admin.moderation.actions_for(bob.me.id) == {
        ModerationAction.BAN,
        ModerationAction.TIMEOUT,
    }
    assert admin.moderation.actions_for(admin.me.id) == frozenset()
    assert bob.moderation.actions_for(admin.me.id) == frozenset()

    assert await admin.moderation.timeout(bob.me.id, 300, reason="cool down")
    await until(
        lambda: bob.me is not None and bob.me.communication_disabled_until is not None,
        "bob's profile to show the timeout",
    )
    ending = timed_out_until(bob.me.communication_disabled_until, datetime.now(UTC))
    assert ending is not None
    assert timeout_text(ending).startswith("You can read but not send until ")

    ended: list[Change] = []
    bob.subscribe(lambda change: ended.append(change) if change.kind == "session_ended" else None)
    assert await admin.moderation.ban(bob.me.id, reason="spam", delete_message_seconds=3600)
    await until(lambda: ended, "bob's client to notice the ban", within=60)
    assert await bob.ended_reason() == BANNED_TEXT

    with pytest.raises(ApiError) as refused:
        await AppSession.login(
            server.base_url,
            "bob",
            DEFAULT_PASSWORD,
            settings=headless_settings(home / "bob", server.base_url),
            tokens=TokenStore(home / "bob"),
        )
    assert readable_error(refused.value) == BANNED_TEXT
