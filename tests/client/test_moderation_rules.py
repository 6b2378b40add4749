"""Which moderation items a member's context menu shows (permissions AND the role hierarchy),
and what a timed-out user reads: pure functions of `voicechat.sdk.app.moderation`, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from voicechat.sdk.app.moderation import (
    ModerationAction,
    allowed_actions,
    timed_out_until,
    timeout_text,
)
from voicechat.sdk.models import Role

ME, THEM = uuid4(), uuid4()
ALL = frozenset(ModerationAction)
NOT_IN_VOICE = frozenset({ModerationAction.BAN, ModerationAction.TIMEOUT})


def role(name: str, position: int, *permissions: str, default: bool = False) -> Role:
    return Role(
        id=uuid4(),
        name=name,
        color=0,
        permissions=list(permissions),
        position=position,
        is_default=default,
    )


ROLES = [
    role("everyone", 0, "view_channel", "send_messages", default=True),
    role("admin", 10, "administrator"),
    role("moderator", 5, "ban_members", "moderate_members", "mute_members", "move_members"),
    role("helper", 3, "mute_members"),
    role("member", 1, "voice_connect"),
]


def actions(
    mine: list[str], theirs: list[str], *, in_voice: bool = True, target: UUID = THEM
) -> frozenset[ModerationAction]:
    return allowed_actions(
        ROLES,
        my_id=ME,
        my_roles=mine,
        target_id=target,
        target_roles=theirs,
        target_in_voice=in_voice,
    )


def test_a_moderator_gets_every_item_on_a_lower_member() -> None:
    assert actions(["moderator"], ["member"]) == ALL
    assert actions(["moderator"], []) == ALL


def test_voice_items_need_the_member_in_voice() -> None:
    assert actions(["moderator"], ["member"], in_voice=False) == NOT_IN_VOICE


def test_each_item_needs_its_permission() -> None:
    assert actions(["helper"], ["member"]) == {
        ModerationAction.SERVER_MUTE,
        ModerationAction.SERVER_DEAFEN,
    }
    assert actions(["member"], []) == frozenset()
    assert actions([], []) == frozenset()


def test_nobody_acts_on_an_equal_or_higher_role() -> None:
    assert actions(["moderator"], ["moderator"]) == frozenset()
    assert actions(["helper"], ["moderator"]) == frozenset()
    # The highest role counts, not the first one named.
    assert actions(["moderator"], ["member", "moderator"]) == frozenset()
    assert actions(["member", "moderator"], ["helper"]) == ALL


def test_the_administrator_is_never_a_target_and_outranks_everyone_else() -> None:
    assert actions(["moderator"], ["admin"]) == frozenset()
    assert actions(["admin"], ["admin"]) == frozenset()
    assert actions(["admin"], ["moderator"]) == ALL
    assert actions(["admin"], ["moderator"], in_voice=False) == NOT_IN_VOICE


def test_not_oneself() -> None:
    assert actions(["admin"], [], target=ME) == frozenset()


def test_a_timeout_runs_until_its_end() -> None:
    now = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    assert timed_out_until(None, now) is None
    assert timed_out_until(now - timedelta(seconds=1), now) is None
    assert timed_out_until(now + timedelta(minutes=5), now) == now + timedelta(minutes=5)


def test_the_composer_says_until_when() -> None:
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    local = until.astimezone()
    text = timeout_text(until)
    assert text.startswith("You can read but not send until ")
    assert text.endswith(f"{local:%H:%M}")
