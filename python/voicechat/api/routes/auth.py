"""`/auth/*`: register, login (password or SSO), MFA, refresh, logout, sessions."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field, model_validator

from voicechat.api.deps import Auth, BearerToken, ClientInfo, CurrentUser, Res
from voicechat.api.openapi import errors
from voicechat.api.schemas import Body, OwnProfile, UsernameField
from voicechat.auth.service import MfaChallenge, TokenPair
from voicechat.db.repositories import UserRepository
from voicechat.error_codes import ErrorCode
from voicechat.errors import NotFound, Unauthorized

router = APIRouter(prefix="/auth", tags=["auth"])

Password = Field(min_length=8, max_length=128)


class RegisterRequest(UsernameField):
    password: str = Password
    email: str | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    display_name: str | None = Field(None, min_length=1, max_length=64)
    invite: str | None = Field(
        None, min_length=1, max_length=64, description="An invite code (needed in invite mode)."
    )


class LoginRequest(Body):
    """Either `{username, password}` or `{provider, redirect_uri?, invite?}`."""

    username: str | None = Field(None, max_length=64)
    password: str | None = Field(None, max_length=128)
    provider: str | None = Field(None, max_length=32)
    redirect_uri: str | None = Field(None, max_length=512)
    invite: str | None = Field(None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_form(self) -> LoginRequest:
        password_form = self.username is not None and self.password is not None
        sso_form = self.provider is not None
        if password_form == sso_form or (sso_form and (self.username or self.password)):
            raise ValueError("send either username and password, or provider")
        if self.redirect_uri is not None and not sso_form:
            raise ValueError("redirect_uri belongs to an SSO login")
        if self.invite is not None and not sso_form:
            raise ValueError("invite belongs to an SSO login (or to /auth/register)")
        return self


class TokenResponse(BaseModel):
    user: OwnProfile
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (the scheme's name, not a secret)
    expires_in: int


class MfaRequiredResponse(BaseModel):
    mfa_required: Literal[True] = True
    mfa_token: str


class SsoStartResponse(BaseModel):
    authorization_url: str


class MfaVerifyRequest(Body):
    mfa_token: str | None = Field(None, max_length=128)
    code: str = Field(min_length=6, max_length=32)


class MfaEnabledResponse(BaseModel):
    enabled: Literal[True] = True
    backup_codes: list[str]


class MfaSetupResponse(BaseModel):
    secret: str
    otpauth_uri: str


class MfaDisableRequest(Body):
    code: str = Field(min_length=6, max_length=32)


class RefreshRequest(Body):
    refresh_token: str = Field(min_length=1, max_length=256)


class LogoutRequest(Body):
    refresh_token: str | None = Field(None, max_length=256)


class SessionResponse(BaseModel):
    id: UUID
    ip_address: str
    user_agent: str
    created_at: int
    last_used_at: int
    current: bool


class ProviderResponse(BaseModel):
    id: str
    name: str


async def _tokens(resources: Res, pair: TokenPair) -> TokenResponse:
    async with resources.db.acquire() as conn:
        roles = await UserRepository(conn).role_names(pair.user.id)
    return TokenResponse(
        user=OwnProfile.own(pair.user, roles),
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
    )


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenResponse,
    responses=errors(403, 409, 429),
)
async def register(
    body: RegisterRequest, auth: Auth, client: ClientInfo, resources: Res
) -> TokenResponse:
    """Create a local account; the first one becomes the administrator.

    Later ones need `invite` when VOICECHAT_REGISTRATION is `invite`, and are refused when it
    is `closed` (403 `invite_required`, `invite_invalid`, `registration_closed`).
    """
    pair = await auth.register(
        body.username,
        body.password,
        client=client,
        email=body.email,
        display_name=body.display_name,
        invite=body.invite,
    )
    return await _tokens(resources, pair)


@router.post(
    "/login",
    response_model=TokenResponse | MfaRequiredResponse | SsoStartResponse,
    responses=errors(401, 404, 429, 502),
)
async def login(
    body: LoginRequest, auth: Auth, client: ClientInfo, resources: Res
) -> TokenResponse | MfaRequiredResponse | SsoStartResponse:
    """Password login (tokens, or an MFA challenge), or the start of an SSO login."""
    if body.provider is not None:
        sso = resources.sso
        if sso is None:
            raise NotFound("no such SSO provider", code=ErrorCode.UNKNOWN_PROVIDER)
        url = await sso.start(body.provider, body.redirect_uri, client, invite=body.invite)
        return SsoStartResponse(authorization_url=url)
    assert body.username is not None
    assert body.password is not None
    outcome = await auth.login(body.username, body.password, client=client)
    if isinstance(outcome, MfaChallenge):
        return MfaRequiredResponse(mfa_token=outcome.mfa_token)
    return await _tokens(resources, outcome)


@router.post("/mfa/setup", response_model=MfaSetupResponse, responses=errors(409))
async def mfa_setup(caller: CurrentUser, auth: Auth, client: ClientInfo) -> MfaSetupResponse:
    """A new TOTP secret for the caller, active once a code confirms it."""
    secret, uri = await auth.setup_mfa(caller, client)
    return MfaSetupResponse(secret=secret, otpauth_uri=uri)


@router.post(
    "/mfa/verify",
    response_model=TokenResponse | MfaEnabledResponse,
    responses=errors(401, 409, 429),
)
async def mfa_verify(
    body: MfaVerifyRequest, auth: Auth, client: ClientInfo, resources: Res, bearer: BearerToken
) -> TokenResponse | MfaEnabledResponse:
    """With `mfa_token`: finish a login. With a bearer token: confirm MFA set-up."""
    if body.mfa_token is not None:
        pair = await auth.finish_mfa_login(body.mfa_token, body.code, client=client)
        return await _tokens(resources, pair)
    if bearer is None:
        raise Unauthorized(
            "send mfa_token, or an access token to confirm set-up", code=ErrorCode.MISSING_TOKEN
        )
    caller = await auth.authenticate(bearer)
    return MfaEnabledResponse(backup_codes=await auth.confirm_mfa(caller, body.code, client))


@router.post("/mfa/disable", status_code=status.HTTP_204_NO_CONTENT, responses=errors(429))
async def mfa_disable(
    body: MfaDisableRequest, caller: CurrentUser, auth: Auth, client: ClientInfo
) -> Response:
    """Turn MFA off; needs a current TOTP or backup code."""
    await auth.disable_mfa(caller, body.code, client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/refresh", response_model=TokenResponse, responses=errors(401, 429))
async def refresh(
    body: RefreshRequest, auth: Auth, client: ClientInfo, resources: Res
) -> TokenResponse:
    """A new token pair; the presented refresh token dies (and reusing it ends the session)."""
    return await _tokens(resources, await auth.refresh(body.refresh_token, client=client))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    caller: CurrentUser, auth: Auth, client: ClientInfo, body: LogoutRequest | None = None
) -> Response:
    """End the caller's session: its access and refresh tokens stop working at once."""
    await auth.logout(caller, client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/sessions", response_model=list[SessionResponse])
async def list_sessions(caller: CurrentUser, auth: Auth) -> list[SessionResponse]:
    """The caller's live sessions, newest first."""
    return [
        SessionResponse(
            id=s.id,
            ip_address=s.ip_address,
            user_agent=s.user_agent,
            created_at=s.created_at,
            last_used_at=s.last_used_at,
            current=s.id == caller.session_id,
        )
        for s in await auth.list_sessions(caller)
    ]


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_session(
    session_id: UUID, caller: CurrentUser, auth: Auth, client: ClientInfo
) -> Response:
    """End one of the caller's sessions."""
    await auth.revoke_session(caller, session_id, client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/providers", response_model=list[ProviderResponse])
async def providers(resources: Res) -> list[ProviderResponse]:
    """The configured SSO providers."""
    return [ProviderResponse(id=p.id, name=p.name) for p in resources.settings.oidc_providers]
