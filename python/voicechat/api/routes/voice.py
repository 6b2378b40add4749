"""`/voice/*`: who is in which voice channel, for clients that just connected.

The gateway's `voice.*` events keep a client current afterwards (SPEC §4).
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel

from voicechat.api.deps import CurrentUser, Db, Res
from voicechat.chat.permissions import visible_channels

router = APIRouter(prefix="/voice", tags=["voice"])


class VoiceState(BaseModel):
    """One user in one voice channel."""

    channel_id: UUID
    user_id: UUID
    muted: bool


@router.get("/states", response_model=list[VoiceState])
async def voice_states(caller: CurrentUser, db: Db, resources: Res) -> list[VoiceState]:
    """Everyone in a voice call (or a DM call) in the channels the caller may see."""
    visible = await visible_channels(db, caller.user_id)
    channels = [c.id for c in visible if c.type in ("voice", "dm")]
    states = await resources.voice.states(channels)
    return [
        VoiceState(channel_id=channel_id, user_id=UUID(user_id), muted=state["muted"])
        for channel_id in channels
        for user_id, state in states[channel_id].items()
    ]
