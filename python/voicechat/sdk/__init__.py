"""The voicechat Python SDK: an async client for bots, scripts, tests and the desktop client.

async with Client("http://127.0.0.1:8080") as chat:
    await chat.login("bot", "password")
    general = await chat.channel_by_name("general")
    await chat.send(general.id, "hello")
    async for event in chat.events():
        if event.method == "message.new" and event.params["content"] == "!ping":
            await chat.send(event.params["channel_id"], "pong")
"""

from voicechat.sdk.client import Client, Page
from voicechat.sdk.errors import (
    ApiError,
    AuthError,
    ConflictError,
    ForbiddenError,
    MfaRequired,
    NotFoundError,
    RateLimitedError,
)
from voicechat.sdk.gateway import GatewayEvent
from voicechat.sdk.models import Channel, Message, User, VoiceState

__all__ = [
    "ApiError",
    "AuthError",
    "Channel",
    "Client",
    "ConflictError",
    "ForbiddenError",
    "GatewayEvent",
    "Message",
    "MfaRequired",
    "NotFoundError",
    "Page",
    "RateLimitedError",
    "User",
    "VoiceState",
]
