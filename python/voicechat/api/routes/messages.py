"""`/channels/{id}/messages`, `/messages/{id}`: history, sending, editing, deleting."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field, TypeAdapter, model_validator
from typing_extensions import TypedDict

from voicechat.api.deps import CurrentUser, Db, Res
from voicechat.api.openapi import errors
from voicechat.api.schemas import DELETED_AUTHOR, Body, EncryptedBody, Message
from voicechat.chat.moderation import ensure_can_communicate
from voicechat.chat.permissions import ChannelAccess, Permission, require
from voicechat.db.pool import Connection
from voicechat.db.repositories.devices import KeyRepository
from voicechat.db.repositories.files import FileRepository
from voicechat.db.repositories.messages import MessageRepository, StoredMessage
from voicechat.error_codes import ErrorCode
from voicechat.errors import BadRequest, Forbidden, NotFound
from voicechat.events import Event

router = APIRouter(tags=["messages"])

MAX_CONTENT = 4000
MAX_ATTACHMENTS = 10


class MessagePage(BaseModel):
    messages: list[Message]
    has_more: bool


class MessageCreate(Body):
    """Plain `{content}` or, in encrypted channels, the SPEC §5 ciphertext fields."""

    content: str | None = Field(None, max_length=MAX_CONTENT)
    reply_to: UUID | None = None
    attachments: list[UUID] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    nonce: str | None = Field(None, min_length=1, max_length=64)
    algorithm: str | None = Field(None, min_length=1, max_length=64)
    ciphertext: str | None = Field(None, min_length=1, max_length=65536)
    sender_key: str | None = Field(None, min_length=1, max_length=128)
    session_id: str | None = Field(None, min_length=1, max_length=128)
    device_id: str | None = Field(None, min_length=1, max_length=64)

    def encrypted_body(self) -> EncryptedBody | None:
        """The ciphertext form, if this is one."""
        fields = (self.algorithm, self.ciphertext, self.sender_key, self.session_id, self.device_id)
        if all(f is None for f in fields):
            return None
        if any(f is None for f in fields):
            raise BadRequest(
                "the encrypted form needs algorithm, ciphertext, sender_key, session_id and "
                "device_id",
                code=ErrorCode.INCOMPLETE_CIPHERTEXT,
            )
        return EncryptedBody(
            algorithm=self.algorithm or "",
            ciphertext=self.ciphertext or "",
            sender_key=self.sender_key or "",
            session_id=self.session_id or "",
            device_id=self.device_id or "",
        )


class MessageEdit(MessageCreate):
    @model_validator(mode="after")
    def _only_body(self) -> MessageEdit:
        if self.reply_to is not None or self.attachments or self.nonce is not None:
            raise ValueError("only the content (or ciphertext) of a message can be edited")
        return self


class AuthorJson(TypedDict):
    """`AuthorProfile` as a dict."""

    id: UUID | None
    username: str
    display_name: str | None
    avatar_url: str | None
    status: str


class AttachmentJson(TypedDict):
    """`Attachment` as a dict."""

    id: UUID
    filename: str
    mime_type: str
    size_bytes: int
    url: str


class MessageJson(TypedDict):
    """`Message` as a dict, typed so that pydantic serialises it by schema, not by guessing."""

    id: UUID
    channel_id: UUID
    author: AuthorJson
    content: str | None
    encrypted: dict[str, str] | None
    nonce: str | None
    reply_to: UUID | None
    attachments: list[AttachmentJson]
    edited_at: datetime | None
    created_at: datetime


class PageJson(TypedDict):
    """`MessagePage` as a dict."""

    messages: list[MessageJson]
    has_more: bool


#: Serialisers of the hot paths (`dump_json` only: the values come typed from the database).
MESSAGE_JSON = TypeAdapter(MessageJson)
PAGE_JSON = TypeAdapter(PageJson)

_DELETED_AUTHOR = AuthorJson(**DELETED_AUTHOR.model_dump())  # type: ignore[typeddict-item]
_ENCRYPTED_FIELDS = tuple(EncryptedBody.model_fields)


def message_json(m: StoredMessage) -> MessageJson:
    """The `Message` shape of a stored message, built without validating it again.

    The hot paths (a history page is 50 of these, a send answers one and publishes it) skip
    pydantic's validation of values the database already typed and serialise with
    `MESSAGE_JSON`/`PAGE_JSON`, so the JSON is what `Message.of(m)` gives (test_messages.py
    compares the two for plain, encrypted, attached and deleted-author messages).
    """
    author = m.author
    enc = m.content_enc
    return {
        "id": m.id,
        "channel_id": m.channel_id,
        "author": _DELETED_AUTHOR
        if author is None
        else {
            "id": author.id,
            "username": author.username,
            "display_name": author.display_name,
            "avatar_url": author.avatar_url,
            "status": author.status,
        },
        "content": m.content,
        "encrypted": {k: enc[k] for k in _ENCRYPTED_FIELDS} if enc else None,
        "nonce": m.nonce,
        "reply_to": m.reply_to,
        "attachments": [
            {
                "id": a.id,
                "filename": a.filename,
                "mime_type": a.mime_type,
                "size_bytes": a.size_bytes,
                "url": a.url,
            }
            for a in m.attachments
        ],
        "edited_at": m.edited_at,
        "created_at": m.created_at,
    }


def _json_response(body: bytes, status_code: int = status.HTTP_200_OK) -> Response:
    return Response(body, status_code, media_type="application/json")


def _body_for(
    access: ChannelAccess, body: MessageCreate, *, allow_empty: bool
) -> tuple[str | None, dict[str, str] | None]:
    """Check the body fits the channel: ciphertext only where encrypted, plaintext elsewhere."""
    encrypted = body.encrypted_body()
    if access.channel.encrypted:
        if body.content is not None:
            raise BadRequest(
                "this channel is end-to-end encrypted: send the encrypted form, not content",
                code=ErrorCode.ENCRYPTION_REQUIRED,
            )
        if encrypted is None:
            raise BadRequest("send the encrypted form", code=ErrorCode.ENCRYPTION_REQUIRED)
        return None, encrypted.model_dump()
    if encrypted is not None:
        raise BadRequest(
            "this channel is not encrypted: send content", code=ErrorCode.NOT_ENCRYPTED
        )
    content = body.content or ""
    if not content.strip() and not allow_empty:
        raise BadRequest("a message needs content or an attachment", code=ErrorCode.EMPTY_MESSAGE)
    return content, None


def _is_plain(body: MessageCreate) -> bool:
    """A send the one-statement path takes: non-blank content, no reply, attachment or
    ciphertext field (everything else the full path checks, in its order)."""
    return (
        body.content is not None
        and bool(body.content.strip())
        and body.reply_to is None
        and not body.attachments
        and body.algorithm is None
        and body.ciphertext is None
        and body.sender_key is None
        and body.session_id is None
        and body.device_id is None
    )


async def _visible_message(
    db: Connection, user_id: UUID, message_id: UUID
) -> tuple[StoredMessage, ChannelAccess]:
    """The message and the caller's access to its channel; one 404 whichever is hidden."""
    try:
        record = await MessageRepository(db).get(message_id)
        access = await require(db, user_id, record.channel_id, Permission.VIEW_CHANNEL)
    except NotFound:
        raise NotFound("no such message", code=ErrorCode.MESSAGE_NOT_FOUND) from None
    return record, access


@router.get("/channels/{channel_id}/messages", response_model=MessagePage, responses=errors(403))
async def list_messages(
    channel_id: UUID,
    caller: CurrentUser,
    resources: Res,
    before: UUID | None = None,
    after: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Response:
    """A page of history, newest first. One query whatever the page size."""
    # One statement checks access and renders the page as JSON (db/repositories/messages.py);
    # only a refusal costs a second query, to tell 404 from 403. The connection is held for
    # the query only, not while the page is sent.
    async with resources.db.acquire() as db:
        repo = MessageRepository(db)
        page = await repo.page_json(
            channel_id, caller.user_id, before=before, after=after, limit=limit
        )
        if page is None:
            await require(db, caller.user_id, channel_id, Permission.VIEW_CHANNEL)
            # Access granted in between: the page as the user may now read it.
            page = await repo.page_json(
                channel_id, caller.user_id, before=before, after=after, limit=limit
            )
            if page is None:
                raise NotFound("no such channel", code=ErrorCode.CHANNEL_NOT_FOUND)
    return _json_response(page)


@router.post(
    "/channels/{channel_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=Message,
    responses={
        200: {"model": Message, "description": "a resend with a known nonce"},
        **errors(403),
    },
)
async def send_message(
    channel_id: UUID, body: MessageCreate, caller: CurrentUser, resources: Res
) -> Response:
    """Send a message; a resend with the same `nonce` returns the first one (200)."""
    if _is_plain(body):
        # One statement: the checks below and the insert, the message rendered by PostgreSQL.
        async with resources.db.acquire() as db:
            rendered = await MessageRepository(db).create_plain_json(
                channel_id=channel_id,
                user_id=caller.user_id,
                content=body.content or "",
                nonce=body.nonce,
            )
        if rendered is not None:
            await resources.events.publish(
                Event("message.new", json.loads(rendered), channel_id=channel_id)
            )
            return _json_response(rendered.encode(), status.HTTP_201_CREATED)
    # Anything else, or a plain send that was not inserted (refused, or a known nonce): the
    # full path, which says why. The connection is given back before the event goes to
    # Valkey and the answer is sent.
    async with resources.db.acquire() as db:
        access = await require(db, caller.user_id, channel_id, Permission.SEND_MESSAGES)
        ensure_can_communicate(access)  # a timeout (read along by the access query)
        if access.channel.type in ("voice", "category"):
            raise BadRequest(
                "messages go to text channels and DMs", code=ErrorCode.NOT_A_TEXT_CHANNEL
            )
        if body.attachments and not access.allows(Permission.UPLOAD_FILES):
            raise Forbidden(
                "you need the upload_files permission here", code=ErrorCode.MISSING_PERMISSION
            )
        content, content_enc = _body_for(access, body, allow_empty=bool(body.attachments))
        record, created = await MessageRepository(db).create(
            channel_id=channel_id,
            user_id=caller.user_id,
            content=content,
            content_enc=content_enc,
            nonce=body.nonce,
            reply_to=body.reply_to,
            attachments=body.attachments,
        )
        if created and content_enc is not None:
            await KeyRepository(db).record_megolm_session(
                channel_id,
                content_enc["session_id"],
                content_enc["sender_key"],
                content_enc["device_id"],
            )
    message = message_json(record)
    if created:
        params = MESSAGE_JSON.dump_python(message, mode="json")
        await resources.events.publish(Event("message.new", params, channel_id=channel_id))
    return _json_response(
        MESSAGE_JSON.dump_json(message),
        status.HTTP_201_CREATED if created else status.HTTP_200_OK,
    )


@router.patch("/messages/{message_id}", response_model=Message, responses=errors(403))
async def edit_message(
    message_id: UUID, body: MessageEdit, caller: CurrentUser, db: Db, resources: Res
) -> Message:
    """Replace a message's content; only its author may."""
    repo = MessageRepository(db)
    record, access = await _visible_message(db, caller.user_id, message_id)
    if record.user_id != caller.user_id:
        raise Forbidden("only the author can edit a message", code=ErrorCode.NOT_AUTHOR)
    content, content_enc = _body_for(access, body, allow_empty=bool(record.attachments))
    message = Message.of(await repo.edit(message_id, content=content, content_enc=content_enc))
    await resources.events.publish(
        Event("message.edit", message.model_dump(mode="json"), channel_id=message.channel_id)
    )
    return message


@router.delete(
    "/messages/{message_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403)
)
async def delete_message(message_id: UUID, caller: CurrentUser, db: Db, resources: Res) -> Response:
    """Delete a message: its author, or anyone with `manage_messages` in the channel."""
    repo = MessageRepository(db)
    record, access = await _visible_message(db, caller.user_id, message_id)
    if record.user_id != caller.user_id and not access.allows(Permission.MANAGE_MESSAGES):
        raise Forbidden(
            "you need the manage_messages permission here", code=ErrorCode.MISSING_PERMISSION
        )
    async with db.transaction():
        orphans = await FileRepository(db).remove_for_message(message_id)
        await repo.delete(message_id)
    await resources.storage.discard(orphans)
    await resources.events.publish(
        Event(
            "message.delete",
            {"id": str(message_id), "channel_id": str(record.channel_id)},
            channel_id=record.channel_id,
        )
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
