"""The key server (SPEC §5): device keys, one-time keys, to-device messages.

Shapes (docs/e2ee.md has the full rules):

    device_keys  = {user_id, device_id, algorithms, keys: {curve25519, ed25519}, signature}
    one-time key = {key_id: {key, signature}}   signature over {device_id, fallback: false,
                                                              key, key_id, user_id}
    fallback_key = {key_id, key, signature}      same, with fallback: true
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field, StringConstraints

from voicechat.api.deps import CurrentUser, Db, Res
from voicechat.api.openapi import errors
from voicechat.api.schemas import Body
from voicechat.db.repositories.devices import KeyRepository
from voicechat.e2ee.signing import decode_key, verify_signed
from voicechat.error_codes import ErrorCode
from voicechat.errors import BadRequest, Conflict, NotFound, PayloadTooLarge, ValidationFailed
from voicechat.events import Event

router = APIRouter(tags=["e2ee"])

DeviceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
KeyId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_+/=-]{1,64}$")]
Base64 = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]+={0,2}$", max_length=128)]

MAX_ONE_TIME_KEYS_PER_UPLOAD = 100
MAX_ONE_TIME_KEYS_STORED = 200
MAX_TO_DEVICE_BYTES = 64 * 1024
MAX_TO_DEVICE_RECIPIENTS = 500


class IdentityKeys(Body):
    curve25519: Base64
    ed25519: Base64


class DeviceKeys(Body):
    user_id: UUID
    device_id: DeviceId
    algorithms: list[Annotated[str, StringConstraints(max_length=64)]] = Field(max_length=8)
    keys: IdentityKeys
    signature: Base64


class SignedKey(Body):
    key: Base64
    signature: Base64


class FallbackKey(SignedKey):
    key_id: KeyId


class KeysUpload(Body):
    device_keys: DeviceKeys | None = None
    device_id: DeviceId | None = None
    one_time_keys: dict[KeyId, SignedKey] = Field(
        default_factory=dict, max_length=MAX_ONE_TIME_KEYS_PER_UPLOAD
    )
    fallback_key: FallbackKey | None = None


class KeyCounts(BaseModel):
    device_id: str
    one_time_key_counts: dict[str, int]
    fallback_key: bool


class KeysQuery(Body):
    user_ids: list[UUID] = Field(min_length=1, max_length=100)


class KeysQueryResult(BaseModel):
    devices: dict[str, dict[str, dict[str, Any]]]


class KeysClaim(Body):
    one_time_keys: dict[UUID, list[DeviceId]] = Field(min_length=1, max_length=100)


class KeysClaimResult(BaseModel):
    one_time_keys: dict[str, dict[str, dict[str, Any]]]


class ToDeviceSend(Body):
    type: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.]{1,64}$")]
    messages: dict[UUID, dict[str, dict[str, Any]]] = Field(min_length=1, max_length=100)


class ToDeviceMessage(BaseModel):
    id: int
    sender_user_id: UUID | None
    sender_device_id: str | None
    type: str
    content: dict[str, Any]


class Inbox(BaseModel):
    device_id: str
    messages: list[ToDeviceMessage]


class Ack(Body):
    up_to: int = Field(ge=0)


class OwnDevice(BaseModel):
    device_id: str
    identity_key: str
    signing_key: str
    current: bool


def _key_payload(
    user_id: UUID, device_id: str, key_id: str, key: str, fallback: bool
) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "fallback": fallback,
        "key": key,
        "key_id": key_id,
        "user_id": str(user_id),
    }


async def _announce_devices(resources: Res, repo: KeyRepository, user_id: UUID) -> None:
    watchers = await repo.device_watchers(user_id)
    params = {"user_id": str(user_id)}
    await resources.events.publish(
        Event("device_list.update", params, user_ids=tuple({*watchers, user_id}))
    )
    for channel_id in await repo.public_encrypted_channels():
        await resources.events.publish(Event("device_list.update", params, channel_id=channel_id))


async def _session_device(repo: KeyRepository, caller: CurrentUser) -> str:
    device_id = await repo.session_device(caller.user_id, caller.session_id)
    if device_id is None:
        raise BadRequest("upload this session's device keys first", code=ErrorCode.NO_DEVICE)
    return device_id


@router.post("/keys/upload", response_model=KeyCounts, responses=errors(404, 409))
async def upload_keys(body: KeysUpload, caller: CurrentUser, db: Db, resources: Res) -> KeyCounts:
    """Register this session's device (signed identity keys) and add signed one-time keys.

    The answer counts the unclaimed one-time keys so the device knows when to top up.
    """
    repo = KeyRepository(db)
    new_device = False
    if body.device_keys is not None:
        keys = body.device_keys
        if keys.user_id != caller.user_id:
            raise BadRequest(
                "device_keys.user_id must be yours", code=ErrorCode.INVALID_DEVICE_KEYS
            )
        if decode_key(keys.keys.curve25519) is None or decode_key(keys.keys.ed25519) is None:
            raise ValidationFailed("keys must be 32-byte base64 keys", code=ErrorCode.INVALID_KEY)
        signed = keys.model_dump(mode="json")
        if not verify_signed(signed, keys.keys.ed25519):
            raise BadRequest(
                "the device keys' signature does not verify", code=ErrorCode.INVALID_SIGNATURE
            )
        existing = await repo.device(caller.user_id, keys.device_id)
        if existing is not None and (
            existing.identity_key != keys.keys.curve25519
            or existing.signing_key != keys.keys.ed25519
        ):
            raise Conflict(
                "this device id has other keys; use a new device id", code=ErrorCode.DEVICE_EXISTS
            )
        new_device = existing is None
        await repo.register_device(
            caller.user_id,
            keys.device_id,
            caller.session_id,
            keys.keys.curve25519,
            keys.keys.ed25519,
            signed,
        )
        device_id = keys.device_id
    elif body.device_id is not None:
        device_id = body.device_id
        if await repo.device(caller.user_id, device_id) is None:
            raise NotFound("no such device of yours", code=ErrorCode.UNKNOWN_DEVICE)
    else:
        device_id = await _session_device(repo, caller)
    device = await repo.device(caller.user_id, device_id)
    assert device is not None
    signing_key = device.signing_key
    one_time: list[dict[str, str]] = []
    for key_id, signed_key in body.one_time_keys.items():
        payload = _key_payload(caller.user_id, device_id, key_id, signed_key.key, False)
        if decode_key(signed_key.key) is None or not verify_signed(
            {**payload, "signature": signed_key.signature}, signing_key
        ):
            raise BadRequest(
                f"one-time key {key_id} has a bad signature", code=ErrorCode.INVALID_SIGNATURE
            )
        one_time.append(
            {"key_id": key_id, "key": signed_key.key, "signature": signed_key.signature}
        )
    stored, _ = await repo.key_counts(caller.user_id, device_id)
    if stored + len(one_time) > MAX_ONE_TIME_KEYS_STORED:
        raise BadRequest(
            f"a device holds at most {MAX_ONE_TIME_KEYS_STORED} one-time keys",
            code=ErrorCode.TOO_MANY_KEYS,
        )
    if body.fallback_key is not None:
        fb = body.fallback_key
        payload = _key_payload(caller.user_id, device_id, fb.key_id, fb.key, True)
        if decode_key(fb.key) is None or not verify_signed(
            {**payload, "signature": fb.signature}, signing_key
        ):
            raise BadRequest(
                "the fallback key has a bad signature", code=ErrorCode.INVALID_SIGNATURE
            )
    async with db.transaction():
        await repo.add_one_time_keys(caller.user_id, device_id, one_time)
        if body.fallback_key is not None:
            fb = body.fallback_key
            await repo.set_fallback_key(caller.user_id, device_id, fb.key_id, fb.key, fb.signature)
    if new_device:
        await _announce_devices(resources, repo, caller.user_id)
    count, has_fallback = await repo.key_counts(caller.user_id, device_id)
    return KeyCounts(
        device_id=device_id,
        one_time_key_counts={"signed_curve25519": count},
        fallback_key=has_fallback,
    )


@router.post("/keys/query", response_model=KeysQueryResult)
async def query_keys(body: KeysQuery, _caller: CurrentUser, db: Db) -> KeysQueryResult:
    """The signed device keys of these users (clients verify the signatures themselves)."""
    devices: dict[str, dict[str, dict[str, Any]]] = {str(u): {} for u in body.user_ids}
    for row in await KeyRepository(db).devices_of(list(set(body.user_ids))):
        keys = row.device_keys
        devices[str(row.user_id)][row.device_id] = (
            json.loads(keys) if isinstance(keys, str) else keys
        )
    return KeysQueryResult(devices=devices)


@router.post("/keys/claim", response_model=KeysClaimResult, responses=errors(404, 429))
async def claim_keys(
    body: KeysClaim, caller: CurrentUser, db: Db, resources: Res
) -> KeysClaimResult:
    """One one-time key per requested device, each handed out exactly once (else the fallback).

    Each requested device counts against the caller's limit for that device's owner
    (`VOICECHAT_RATE_LIMIT_KEY_CLAIMS`), before anything is handed out, so one user cannot
    drain another's one-time keys. Raises 404 when a requested device does not exist, 429
    when the limit is reached.
    """
    limits = resources.auth.limits
    for user_id, device_ids in body.one_time_keys.items():
        await limits.hit(
            resources.settings.rate_limit_key_claims,
            "key-claims",
            f"{caller.user_id}:{user_id}",
            cost=max(1, len(set(device_ids))),
        )
    repo = KeyRepository(db)
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for user_id, device_ids in body.one_time_keys.items():
        for device_id in device_ids:
            if await repo.device(user_id, device_id) is None:
                raise NotFound(
                    f"no device {device_id} of user {user_id}", code=ErrorCode.UNKNOWN_DEVICE
                )
    async with db.transaction():
        for user_id, device_ids in body.one_time_keys.items():
            for device_id in dict.fromkeys(device_ids):
                claimed = await repo.claim(user_id, device_id)
                if claimed is None:
                    continue
                result.setdefault(str(user_id), {})[device_id] = {
                    "key_id": claimed.key_id,
                    "key": claimed.key,
                    "signature": claimed.signature,
                    "fallback": claimed.fallback,
                }
    return KeysClaimResult(one_time_keys=result)


@router.put("/sendToDevice/{txn_id}", response_model=dict[str, int])
async def send_to_device(
    txn_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._~-]{1,128}$")],
    body: ToDeviceSend,
    caller: CurrentUser,
    db: Db,
    resources: Res,
) -> dict[str, int]:
    """Queue messages for devices (kept until each acknowledges); a repeated txn_id is a no-op.

    `messages` maps user id → device id (or `*` for all of that user's devices) → content.
    """
    repo = KeyRepository(db)
    sender_device = await _session_device(repo, caller)
    queued: list[dict[str, Any]] = []
    for user_id, per_device in body.messages.items():
        known = {row.device_id for row in await repo.devices_of([user_id])}
        for device_id, content in per_device.items():
            size = len(json.dumps(content))
            if size > MAX_TO_DEVICE_BYTES:
                raise PayloadTooLarge(
                    f"a to-device message is at most {MAX_TO_DEVICE_BYTES // 1024} KiB",
                    code=ErrorCode.TO_DEVICE_TOO_LARGE,
                )
            targets = sorted(known) if device_id == "*" else [device_id]
            if device_id != "*" and device_id not in known:
                raise NotFound(
                    f"no device {device_id} of user {user_id}", code=ErrorCode.UNKNOWN_DEVICE
                )
            queued.extend(
                {"user_id": str(user_id), "device_id": d, "content": content} for d in targets
            )
    if len(queued) > MAX_TO_DEVICE_RECIPIENTS:
        raise BadRequest(
            "too many recipients in one transaction", code=ErrorCode.TOO_MANY_RECIPIENTS
        )
    async with db.transaction():
        if not await repo.start_txn(caller.user_id, sender_device, txn_id):
            return {"queued": 0}
        rows = await repo.queue_to_device(caller.user_id, sender_device, body.type, queued)
    by_id = {(r.recipient_user_id, r.recipient_device_id): r.id for r in rows}
    for message in queued:
        recipient = UUID(message["user_id"])
        await resources.events.publish(
            Event(
                "to_device",
                {
                    "id": by_id[(recipient, message["device_id"])],
                    "recipient_device_id": message["device_id"],
                    "sender_user_id": str(caller.user_id),
                    "sender_device_id": sender_device,
                    "type": body.type,
                    "content": message["content"],
                },
                user_ids=(recipient,),
            )
        )
    return {"queued": len(rows)}


@router.get("/sendToDevice/inbox", response_model=Inbox, responses=errors(400))
async def inbox(
    caller: CurrentUser,
    db: Db,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Inbox:
    """This session's device's unacknowledged to-device messages, oldest first."""
    repo = KeyRepository(db)
    device_id = await _session_device(repo, caller)
    rows = await repo.inbox(caller.user_id, device_id, after, limit)
    return Inbox(
        device_id=device_id,
        messages=[
            ToDeviceMessage(
                id=r.id,
                sender_user_id=r.sender_user_id,
                sender_device_id=r.sender_device_id,
                type=r.type,
                content=r.content,
            )
            for r in rows
        ],
    )


@router.post("/sendToDevice/inbox/ack", status_code=status.HTTP_204_NO_CONTENT)
async def acknowledge(body: Ack, caller: CurrentUser, db: Db) -> Response:
    """Forget this device's messages up to and including `up_to`."""
    repo = KeyRepository(db)
    await repo.acknowledge(caller.user_id, await _session_device(repo, caller), body.up_to)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/keys/devices", response_model=list[OwnDevice])
async def own_devices(caller: CurrentUser, db: Db) -> list[OwnDevice]:
    """The caller's devices."""
    rows = await KeyRepository(db).own_devices(caller.user_id, caller.session_id)
    return [
        OwnDevice(
            device_id=r.device_id,
            identity_key=r.identity_key,
            signing_key=r.signing_key,
            current=bool(r.current),
        )
        for r in rows
    ]


@router.delete("/keys/devices/{device_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_device(
    device_id: DeviceId, caller: CurrentUser, db: Db, resources: Res
) -> Response:
    """Remove one of the caller's devices; the others are told."""
    repo = KeyRepository(db)
    if not await repo.delete_device(caller.user_id, device_id):
        raise NotFound("no such device of yours", code=ErrorCode.UNKNOWN_DEVICE)
    await _announce_devices(resources, repo, caller.user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
