"""Who is who: the signed-in user's profile and the community's members with their presence.

The member list is loaded at start and kept current from presence events; someone seen for
the first time later (typing, in voice, as an author) is looked up once, so the GUI can name
them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from voicechat.sdk.app.feed import NETWORK_ERRORS, Background, ChangeFeed
from voicechat.sdk.app.state import Change, Member, Presence, sorted_members
from voicechat.sdk.client import Client
from voicechat.sdk.errors import ApiError
from voicechat.sdk.models import Me, Message, User

log = logging.getLogger(__name__)


class Roster:
    """The signed-in user and every member, as the member list and the names in the GUI show
    them.

    Args:
        client: where profiles are looked up.
        feed: where `me` and `members` changes go.
        background: runs the look-ups of people seen for the first time.
    """

    def __init__(self, client: Client, feed: ChangeFeed, background: Background) -> None:
        self._client = client
        self._feed = feed
        self._background = background
        self.me: Me | None = client.user
        self.members: dict[UUID, Member] = {}
        self._learning: set[UUID] = set()
        # Called with a user id once a profile looked up by `learn` is known.
        self.on_learned: Callable[[UUID], None] | None = None

    @property
    def my_id(self) -> UUID | None:
        """The signed-in user's id (None before it is known)."""
        return self.me.id if self.me is not None else None

    def user(self, user_id: UUID) -> User | None:
        """A member's profile, if known."""
        member = self.members.get(user_id)
        return member.user if member is not None else None

    def sorted(self) -> list[Member]:
        """Members for the user list: online first, by name."""
        return sorted_members(self.members)

    def set_member(self, user: User, presence: Presence) -> None:
        """Add or update a member (keeping only the fields the list shows)."""
        if user.id is None:
            return
        self.members[user.id] = Member(
            User(**user.model_dump(include={"id", "username", "display_name", "avatar_url"})),
            presence,
        )

    def set_me(self, me: Me) -> None:
        """The signed-in user's fresh profile (also a member)."""
        self.me = me
        self.set_member(me, me.status)

    def note_authors(self, messages: list[Message]) -> None:
        """Count the authors of loaded messages as members (someone who joined after the
        member list was loaded)."""
        added = False
        for message in messages:
            author = message.author
            if author.id is not None and author.id not in self.members:
                self.set_member(author, author.status)
                added = True
        if added:
            self._feed.notify(Change("members"))

    def learn(self, user_id: UUID) -> None:
        """Fetch the profile of someone seen for the first time (typing, in voice) who was not
        in the member list loaded at start (they registered since)."""
        if user_id in self.members or user_id in self._learning:
            return
        self._learning.add(user_id)
        self._background.spawn(self._learn(user_id))

    async def _learn(self, user_id: UUID) -> None:
        try:
            user = await self._client.get_user(user_id)
        except (ApiError, *NETWORK_ERRORS):
            return
        finally:
            self._learning.discard(user_id)
        if user_id not in self.members:
            self.set_member(user, user.status)
            self._feed.notify(Change("members", payload=user_id))
            if self.on_learned is not None:
                self.on_learned(user_id)

    async def presence_changed(self, user_id: UUID, status: Presence) -> None:
        """A `presence.update`: someone came online, went idle, or left."""
        member = self.members.get(user_id)
        if member is None:
            try:
                user = await self._client.get_user(user_id)
            except (ApiError, *NETWORK_ERRORS):
                user = User(id=user_id, username=str(user_id)[:8], status=status)
            self.set_member(user, status)
        else:
            self.members[user_id] = Member(member.user, status)
        if self.me is not None and user_id == self.me.id:
            self.me = self.me.model_copy(update={"status": status})
            self._feed.notify(Change("me"))
        self._feed.notify(Change("members", payload=user_id))

    def member_updated(self, params: dict[str, Any]) -> None:
        """A `member.update`: the signed-in user's timeout started or ended."""
        if self.me is None or params.get("user_id") != str(self.me.id):
            return
        if "communication_disabled_until" in params:
            until = params["communication_disabled_until"]
            self.me = self.me.model_copy(
                update={
                    "communication_disabled_until": (
                        None if until is None else datetime.fromisoformat(until)
                    )
                }
            )
            self._feed.notify(Change("me"))

    async def set_presence(self, status: Presence) -> bool:
        """Online, idle, do not disturb, or invisible (`offline`); False (and the error
        reported) when the server could not be told."""
        try:
            await self._client.set_presence(status)
        except (ApiError, TimeoutError, *NETWORK_ERRORS) as exc:
            self._feed.report(exc)
            return False
        if self.me is not None and self.me.id is not None:
            self.me = self.me.model_copy(update={"status": status})
            self.set_member(self.me, status)
            self._feed.notify(Change("me"))
        return True
