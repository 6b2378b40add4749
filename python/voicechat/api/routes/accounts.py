"""Accounts (SPEC §3 "Accounts", docs/accounts.md): password change and reset, email
verification, account deletion and export."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import StreamingResponse
from pydantic import Field, model_validator

from voicechat.api.deps import ClientInfo, CurrentUser, Res
from voicechat.api.openapi import errors
from voicechat.api.schemas import Body

router = APIRouter(tags=["accounts"])

Password = Field(min_length=8, max_length=128)
Email = Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
Token = Field(min_length=1, max_length=256)


class PasswordChange(Body):
    current_password: str = Field(min_length=1, max_length=128)
    new_password: str = Password


class ForgotPassword(Body):
    """Either `{email}` or `{username}`."""

    email: str | None = Field(None, max_length=254)
    username: str | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _one_form(self) -> ForgotPassword:
        if (self.email is None) == (self.username is None):
            raise ValueError("send either email or username")
        return self


class PasswordReset(Body):
    token: str = Token
    new_password: str = Password


class EmailChange(Body):
    email: str = Email


class EmailVerify(Body):
    token: str = Token


class AccountDeletion(Body):
    """`{password}` for a local account, `{code}` (TOTP or backup) for an SSO account."""

    password: str | None = Field(None, max_length=128)
    code: str | None = Field(None, min_length=6, max_length=32)


@router.post("/auth/password", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403, 429))
async def change_password(
    body: PasswordChange, caller: CurrentUser, resources: Res, client: ClientInfo
) -> Response:
    """Change the caller's password; every other session of theirs ends."""
    await resources.accounts.change_password(
        caller, body.current_password, body.new_password, client
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/auth/password/forgot",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses=errors(429),
)
async def forgot_password(body: ForgotPassword, resources: Res, client: ClientInfo) -> Response:
    """Mail a one-time reset link (30 minutes) if such an account exists; 202 either way."""
    await resources.accounts.forgot_password(
        email=body.email, username=body.username, client=client
    )
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post(
    "/auth/password/reset", status_code=status.HTTP_204_NO_CONTENT, responses=errors(410, 429)
)
async def reset_password(body: PasswordReset, resources: Res, client: ClientInfo) -> Response:
    """Set a new password with a mailed token (once); every session of the user ends."""
    await resources.accounts.reset_password(body.token, body.new_password, client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/users/@me/email",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses=errors(429, 503),
)
async def change_email(
    body: EmailChange, caller: CurrentUser, resources: Res, client: ClientInfo
) -> Response:
    """Set the caller's address (unverified) and queue a verification mail to it."""
    await resources.accounts.change_email(caller, body.email, client)
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post(
    "/auth/email/verify", status_code=status.HTTP_204_NO_CONTENT, responses=errors(410, 429)
)
async def verify_email(body: EmailVerify, resources: Res, client: ClientInfo) -> Response:
    """Confirm an address with the mailed token; the profile shows `email_verified: true`."""
    await resources.accounts.verify_email(body.token, client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/users/@me", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403, 409, 429)
)
async def delete_me(
    body: AccountDeletion, caller: CurrentUser, resources: Res, client: ClientInfo
) -> Response:
    """Delete the caller's account: sessions, devices, keys and avatar go, the profile is
    anonymised, messages stay under the deleted-user placeholder."""
    await resources.accounts.delete(caller, password=body.password, code=body.code, client=client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/users/@me/export",
    responses={200: {"content": {"application/json": {}}}, **errors(429)},
)
async def export_me(caller: CurrentUser, resources: Res) -> StreamingResponse:
    """A JSON archive of the caller's data, streamed (profile, sessions, roles, uploaded files'
    metadata, every plaintext message they wrote)."""
    await resources.accounts.check_export(caller)
    return StreamingResponse(
        resources.accounts.export(caller),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="voicechat-export.json"'},
    )
