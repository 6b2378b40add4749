"""`/bots`: bot accounts and their tokens (SPEC §3 "Accounts"; docs/accounts.md "Bots")."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field

from voicechat.api.deps import ClientInfo, CurrentUser, Db, Res
from voicechat.api.openapi import errors
from voicechat.api.schemas import UsernameField
from voicechat.auth import bots
from voicechat.auth.service import Authenticated, Client
from voicechat.db.repositories.bots import Bot

router = APIRouter(tags=["bots"])


class BotCreate(UsernameField):
    display_name: str | None = Field(None, min_length=1, max_length=64)


class BotTokenOut(BaseModel):
    """The bot's live token, never its value."""

    id: UUID
    created_at: datetime
    last_used_at: datetime | None


class BotOut(BaseModel):
    """A bot account as its owner (or an administrator) sees it."""

    id: UUID
    username: str
    display_name: str | None
    avatar_url: str | None
    bot: Literal[True] = True
    owner_id: UUID
    owner_username: str
    disabled: bool
    created_at: datetime
    token: BotTokenOut | None

    @classmethod
    def of(cls, bot: Bot) -> BotOut:
        """From the repository's row."""
        token = None
        if bot.token_id is not None and bot.token_created_at is not None:
            token = BotTokenOut(
                id=bot.token_id,
                created_at=bot.token_created_at,
                last_used_at=bot.token_last_used_at,
            )
        return cls(
            id=bot.id,
            username=bot.username,
            display_name=bot.display_name,
            avatar_url=bot.avatar_url,
            owner_id=bot.owner_id,
            owner_username=bot.owner_username,
            disabled=bot.disabled,
            created_at=bot.created_at,
            token=token,
        )


class BotWithToken(BaseModel):
    """A bot and a token just made for it: `token` is shown this once and never again."""

    bot: BotOut
    token: str


def _caller(caller: Authenticated, client: Client) -> bots.Caller:
    return bots.Caller(caller.user_id, caller.bot, client.ip or None, client.user_agent)


@router.post(
    "/bots",
    status_code=status.HTTP_201_CREATED,
    response_model=BotWithToken,
    responses=errors(403, 409),
)
async def create_bot(
    body: BotCreate, caller: CurrentUser, client: ClientInfo, db: Db
) -> BotWithToken:
    """Create a bot account owned by the caller (`manage_bots`), with its first token."""
    made = await bots.create_bot(db, _caller(caller, client), body.username, body.display_name)
    return BotWithToken(bot=BotOut.of(made.bot), token=made.token)


@router.get("/bots", response_model=list[BotOut], responses=errors(403))
async def list_bots(caller: CurrentUser, client: ClientInfo, db: Db) -> list[BotOut]:
    """The caller's bots (`manage_bots`); every bot for an administrator."""
    return [BotOut.of(bot) for bot in await bots.list_bots(db, _caller(caller, client))]


@router.delete("/bots/{bot_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403, 404))
async def delete_bot(
    bot_id: UUID, caller: CurrentUser, client: ClientInfo, db: Db, resources: Res
) -> Response:
    """Delete a bot: its tokens stop working at once, its messages stay."""
    await bots.delete_bot(db, resources.cache, _caller(caller, client), bot_id, resources.auth.live)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/bots/{bot_id}/token",
    status_code=status.HTTP_201_CREATED,
    response_model=BotWithToken,
    responses=errors(403, 404),
)
async def new_bot_token(
    bot_id: UUID, caller: CurrentUser, client: ClientInfo, db: Db, resources: Res
) -> BotWithToken:
    """A new token for the bot (shown once); the previous one stops working at once."""
    made = await bots.new_token(
        db, resources.cache, _caller(caller, client), bot_id, resources.auth.live
    )
    return BotWithToken(bot=BotOut.of(made.bot), token=made.token)
