"""`/auth/oidc/*`: the provider's redirect back to us, and the client's `login_code` exchange.

`POST /auth/login {provider, redirect_uri?}` (in `routes/auth.py`) starts an SSO login.
"""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import Field

from voicechat.api.deps import ClientInfo, Res
from voicechat.api.openapi import errors
from voicechat.api.routes.auth import TokenResponse, _tokens
from voicechat.api.schemas import Body
from voicechat.auth.sso import SsoFailed, SsoService, _with_query
from voicechat.error_codes import ErrorCode
from voicechat.errors import NotFound

router = APIRouter(prefix="/auth", tags=["auth"])

# The login code must not linger in caches or leak through a Referer to the next page.
_PRIVATE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

_CODE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>voicechat sign-in</title></head>
<body><h1>Signed in</h1>
<p>Paste this one-time code into voicechat within {minutes} minutes:</p>
<p><code id="login_code">{code}</code></p></body></html>
"""


class ExchangeRequest(Body):
    login_code: str = Field(min_length=1, max_length=128)


def _sso(resources: Res) -> SsoService:
    if resources.sso is None:
        raise NotFound("no SSO provider is configured", code=ErrorCode.UNKNOWN_PROVIDER)
    return resources.sso


@router.get(
    "/oidc/callback",
    status_code=302,
    response_class=RedirectResponse,
    responses={
        200: {"description": "No redirect_uri was given: a page (or JSON) with the code."},
        302: {
            "description": "To the client's redirect_uri with `?login_code=`, or with "
            "`?error=&error_description=` when the login failed."
        },
        **errors(400, 401, 403, 404, 409, 502),
    },
)
async def oidc_callback(
    request: Request,
    resources: Res,
    client: ClientInfo,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    state: Annotated[str | None, Query(max_length=256)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    """Where the identity provider sends the browser back.

    On success: 302 to the `redirect_uri` the login started with, plus `login_code` (one-time,
    2 minutes); on a failure after the login was recognised, 302 there with `error` (our error
    code) and `error_description`, so a waiting client learns of it at once. A login started
    without `redirect_uri` gets a page showing the code, or `{login_code, expires_in}` when the
    request accepts JSON.
    """
    try:
        result = await _sso(resources).finish(state=state, code=code, error=error, client=client)
    except SsoFailed as failed:
        # The OAuth 2.0 error-response shape (RFC 6749 §4.1.2.1), to the client's listener.
        location = _with_query(
            failed.redirect_uri,
            error=failed.error.code,
            error_description=failed.error.message,
        )
        return RedirectResponse(location, status_code=302, headers=_PRIVATE_HEADERS)
    if result.redirect_uri is not None:
        location = _with_query(result.redirect_uri, login_code=result.login_code)
        return RedirectResponse(location, status_code=302, headers=_PRIVATE_HEADERS)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(
            {"login_code": result.login_code, "expires_in": result.expires_in},
            headers=_PRIVATE_HEADERS,
        )
    page = _CODE_PAGE.format(
        code=html.escape(result.login_code), minutes=max(1, result.expires_in // 60)
    )
    return HTMLResponse(page, headers=_PRIVATE_HEADERS)


@router.post("/oidc/exchange", response_model=TokenResponse, responses=errors(401, 404, 409, 429))
async def oidc_exchange(body: ExchangeRequest, resources: Res, client: ClientInfo) -> TokenResponse:
    """Trade the one-time `login_code` from the callback for tokens (as a password login)."""
    pair = await _sso(resources).exchange(body.login_code, client=client)
    return await _tokens(resources, pair)
