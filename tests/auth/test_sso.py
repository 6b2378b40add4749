"""SSO (OIDC) against real `oidc-provider-mock` processes on loopback, driven over HTTP.

Each login goes the way a desktop client's does: `POST /auth/login {provider, redirect_uri}`,
the browser at the provider's login form, the provider's redirect to our callback, our redirect
to the client's loopback URI with a `login_code`, and `POST /auth/oidc/exchange`.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from authlib.oidc.core.util import create_half_hash  # type: ignore[import-untyped]
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey
from redis import Redis

from tests.conftest import LiveServer
from tests.utils.auth import bearer, register
from tests.utils.net import free_port
from tests.utils.oidc import MockProvider, start_provider
from voicechat.api import create_app
from voicechat.auth.oidc import IdentityProvider, ProviderMetadata
from voicechat.auth.sso import check_redirect_uri, sanitise_username
from voicechat.crypto import token_hash
from voicechat.errors import BadGateway, Unauthorized
from voicechat.settings import OidcProvider, Settings

pytestmark = pytest.mark.slow  # starts two provider processes

API = "http://testserver"
CALLBACK = f"{API}/auth/oidc/callback"
LOOPBACK = "http://127.0.0.1:53682/callback"
ALLOWED = "https://chat.example.com/sso/done"


@pytest.fixture(scope="module")
def providers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MockProvider, ...]]:
    """Two independent providers (two issuers, two key pairs), shared by this module."""
    root = tmp_path_factory.mktemp("oidc")
    started = [start_provider(root / f"provider-{i}.log") for i in range(2)]
    try:
        yield tuple(started)
    finally:
        for provider in started:
            provider.stop()


@pytest.fixture
def idp(providers: tuple[MockProvider, ...]) -> MockProvider:
    return providers[0]


def _config(provider_id: str, issuer: str, **extra: Any) -> OidcProvider:
    return OidcProvider(
        id=provider_id,
        name=provider_id.upper(),
        issuer=issuer,
        client_id=f"voicechat-{provider_id}",
        client_secret=f"secret-of-{provider_id}",
        **extra,
    )


@pytest.fixture
def sso_settings(
    settings_factory: Callable[..., Settings],
    database_url: str,
    clean_valkey: str,
    providers: tuple[MockProvider, ...],
) -> Settings:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    return settings_factory(
        database_url=database_url,
        valkey_url=clean_valkey,
        public_url=API,
        oidc_redirect_allowlist=[ALLOWED],
        oidc_providers=[
            _config("corp", providers[0].issuer),
            _config("partner", providers[1].issuer, roles_claims=("roles",)),
            _config("down", down),
            _config("broken", providers[0].issuer + "/not-an-issuer"),
        ],
    )


@pytest.fixture
async def api(sso_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(sso_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=API) as client:
            yield client


async def _start(api: httpx.AsyncClient, provider: str, redirect_uri: str | None = LOOPBACK) -> str:
    body: dict[str, str] = {"provider": provider}
    if redirect_uri is not None:
        body["redirect_uri"] = redirect_uri
    response = await api.post("/auth/login", json=body)
    assert response.status_code == 200, response.text
    url: str = response.json()["authorization_url"]
    return url


async def _log_in_at_provider(authorization_url: str, sub: str) -> str:
    """Play the browser: open the provider's form, submit the subject; returns the redirect."""
    async with httpx.AsyncClient(timeout=10) as browser:
        form = await browser.get(authorization_url)
        assert form.status_code == 200, form.text
        assert 'name="sub"' in form.text
        submitted = await browser.post(authorization_url, data={"sub": sub})
    assert submitted.status_code == 302, submitted.text
    location = submitted.headers["location"]
    assert location.startswith(CALLBACK + "?")
    return location


async def _callback(api: httpx.AsyncClient, location: str, **headers: str) -> httpx.Response:
    return await api.get(location.removeprefix(API), headers=headers)


def _login_code(response: httpx.Response, redirect_uri: str = LOOPBACK) -> str:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(redirect_uri + "?login_code=")
    assert response.headers["cache-control"] == "no-store"
    (code,) = parse_qs(urlsplit(location).query)["login_code"]
    return code


async def _sso_login(
    api: httpx.AsyncClient, provider: str, idp: MockProvider, sub: str
) -> dict[str, Any]:
    url = await _start(api, provider)
    code = _login_code(await _callback(api, await _log_in_at_provider(url, sub)))
    exchanged = await api.post("/auth/oidc/exchange", json={"login_code": code})
    assert exchanged.status_code == 200, exchanged.text
    tokens: dict[str, Any] = exchanged.json()
    return tokens


async def _me(api: httpx.AsyncClient, tokens: dict[str, Any]) -> dict[str, Any]:
    response = await api.get("/users/@me", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200, response.text
    me: dict[str, Any] = response.json()
    return me


async def _sql(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]


# -- the flow ---------------------------------------------------------------------------------


async def test_new_subject_is_provisioned_with_mapped_attributes_and_roles(
    api: httpx.AsyncClient, idp: MockProvider, database_url: str, clean_valkey: str
) -> None:
    await register(api, "founder")  # the first account (administrator) is a local one
    await _sql(database_url, "INSERT INTO roles (name) VALUES ('Moderators')")
    idp.put_user(
        "ada-0001",
        {
            "preferred_username": "Ada.Lovelace",
            "name": "Ada Lovelace",
            "email": "ada@example.org",
            "email_verified": True,
            "picture": "https://images.example.org/ada.png",
            "groups": ["MODERATORS", "no-such-role"],
        },
    )

    url = await _start(api, "corp")
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(idp.issuer + "/oauth2/authorize?")
    assert query["response_type"] == ["code"]
    assert query["client_id"] == ["voicechat-corp"]
    assert query["redirect_uri"] == [CALLBACK]
    assert query["code_challenge_method"] == ["S256"]
    assert set(query["scope"][0].split()) == {"openid", "profile", "email"}
    # The pending login lives in Valkey under the hash of its state, with the PKCE verifier
    # whose S256 challenge went to the provider.
    with Redis.from_url(clean_valkey) as valkey:
        pending = valkey.hgetall(f"vc:oidc:state:{token_hash(query['state'][0])}")
    assert pending[b"nonce"].decode() == query["nonce"][0]
    assert pending[b"redirect_uri"].decode() == LOOPBACK
    assert create_s256_code_challenge(pending[b"verifier"].decode()) == query["code_challenge"][0]

    code = _login_code(await _callback(api, await _log_in_at_provider(url, "ada-0001")))
    exchanged = await api.post("/auth/oidc/exchange", json={"login_code": code})
    assert exchanged.status_code == 200, exchanged.text
    tokens = exchanged.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["refresh_token"]

    me = await _me(api, tokens)
    assert me["username"] == "ada.lovelace"
    assert me["display_name"] == "Ada.Lovelace"  # preferred_username comes first
    assert me["email"] == "ada@example.org"
    assert me["avatar_url"] == "https://images.example.org/ada.png"
    assert me["auth_method"] == "oidc"
    assert me["roles"] == ["Moderators"]  # matched case-insensitively; unknown groups ignored

    rows = await _sql(
        database_url,
        "SELECT provider, external_id, password_hash FROM users WHERE id = $1::uuid",
        me["id"],
    )
    assert [tuple(r) for r in rows] == [("corp", "ada-0001", None)]
    events = await _sql(
        database_url,
        "SELECT event, details FROM audit_log WHERE user_id = $1::uuid ORDER BY id",
        me["id"],
    )
    assert [e["event"] for e in events] == ["user.provisioned", "login.succeeded"]
    assert '"method": "oidc:corp"' in events[1]["details"]


async def test_a_second_login_finds_the_same_user_and_refreshes_its_attributes(
    api: httpx.AsyncClient, idp: MockProvider, database_url: str
) -> None:
    idp.put_user("grace-0002", {"preferred_username": "grace", "groups": ["administrator"]})
    first = await _me(api, await _sso_login(api, "corp", idp, "grace-0002"))
    # The very first account of a server is its administrator, SSO or not.
    assert first["roles"] == ["administrator"]

    idp.put_user(
        "grace-0002",
        {"preferred_username": "grace", "name": "Grace H.", "picture": "https://x.example/g.png"},
    )
    second = await _me(api, await _sso_login(api, "corp", idp, "grace-0002"))
    assert second["id"] == first["id"]
    assert second["username"] == "grace"
    assert second["display_name"] == "grace"
    assert second["avatar_url"] == "https://x.example/g.png"
    (count,) = await _sql(database_url, "SELECT count(*) FROM users")
    assert count[0] == 1


async def test_a_taken_username_gets_a_suffix(api: httpx.AsyncClient, idp: MockProvider) -> None:
    await register(api, "linus")
    idp.put_user("linus-0003", {"preferred_username": "Linus", "email": "linus@example.org"})
    me = await _me(api, await _sso_login(api, "corp", idp, "linus-0003"))
    assert me["username"] != "linus"
    assert me["username"].startswith("linus")
    assert sanitise_username(me["username"]) == me["username"]


async def test_two_providers_keep_their_subjects_apart(
    api: httpx.AsyncClient, providers: tuple[MockProvider, ...], database_url: str
) -> None:
    corp, partner = providers
    corp.put_user("same-sub", {"preferred_username": "sam", "groups": ["nothing"]})
    partner.put_user("same-sub", {"preferred_username": "sam", "roles": ["Moderators"]})
    await _sql(database_url, "INSERT INTO roles (name) VALUES ('moderators')")
    at_corp = await _me(api, await _sso_login(api, "corp", corp, "same-sub"))
    at_partner = await _me(api, await _sso_login(api, "partner", partner, "same-sub"))
    assert at_corp["id"] != at_partner["id"]
    assert at_partner["username"] != at_corp["username"]
    assert at_partner["roles"] == ["moderators"]  # this provider maps its `roles` claim
    listed = (await api.get("/auth/providers")).json()
    assert [p["id"] for p in listed] == ["corp", "partner", "down", "broken"]


async def test_without_redirect_uri_the_callback_shows_the_code(
    api: httpx.AsyncClient, idp: MockProvider
) -> None:
    idp.put_user("page-0004", {"preferred_username": "paige"})
    url = await _start(api, "corp", redirect_uri=None)
    location = await _log_in_at_provider(url, "page-0004")
    page = await _callback(api, location, accept="application/json")
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.json()["expires_in"] == 120
    exchanged = await api.post(
        "/auth/oidc/exchange", json={"login_code": page.json()["login_code"]}
    )
    assert exchanged.status_code == 200
    assert exchanged.json()["user"]["username"] == "paige"

    html_page = await _callback(
        api, await _log_in_at_provider(await _start(api, "corp", None), "page-0004")
    )
    assert html_page.status_code == 200
    assert html_page.headers["content-type"].startswith("text/html")
    assert 'id="login_code"' in html_page.text


async def test_an_allow_listed_redirect_uri_gets_the_code(
    api: httpx.AsyncClient, idp: MockProvider
) -> None:
    idp.put_user("web-0005", {"preferred_username": "webby"})
    url = await _start(api, "corp", redirect_uri=ALLOWED)
    response = await _callback(api, await _log_in_at_provider(url, "web-0005"))
    assert (
        await api.post("/auth/oidc/exchange", json={"login_code": _login_code(response, ALLOWED)})
    ).status_code == 200


# -- refusals ---------------------------------------------------------------------------------


async def test_a_wrong_or_replayed_state_is_refused(
    api: httpx.AsyncClient, idp: MockProvider, database_url: str
) -> None:
    idp.put_user("eve-0006", {"preferred_username": "eve"})
    location = await _log_in_at_provider(await _start(api, "corp"), "eve-0006")
    parts = urlsplit(location)
    params = parse_qs(parts.query)
    forged = urlunsplit(
        parts._replace(query=urlencode({"code": params["code"][0], "state": "not-our-state"}))
    )
    _assert_error(await _callback(api, forged), 400, "invalid_state")
    _assert_error(await api.get("/auth/oidc/callback", params={"code": "x"}), 400, "invalid_state")

    _login_code(await _callback(api, location))  # the genuine one works, once
    _assert_error(await _callback(api, location), 400, "invalid_state")
    failures = await _sql(
        database_url, "SELECT details FROM audit_log WHERE event = 'login.sso_failed'"
    )
    assert len(failures) == 3
    assert all('"invalid_state"' in row["details"] for row in failures)


async def test_an_id_token_with_another_nonce_is_refused(
    api: httpx.AsyncClient, idp: MockProvider, database_url: str
) -> None:
    """The provider is asked (by someone tampering with the authorization URL) to put another
    nonce into the ID token; state and PKCE are this login's, so only the nonce check stops it."""
    idp.put_user("mallory-0007", {"preferred_username": "mallory"})
    url = await _start(api, "corp", redirect_uri=None)
    parts = urlsplit(url)
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    params["nonce"] = "nonce-of-another-login"
    tampered = urlunsplit(parts._replace(query=urlencode(params)))
    response = await _callback(api, await _log_in_at_provider(tampered, "mallory-0007"))
    _assert_error(response, 401, "invalid_nonce")
    assert await _sql(database_url, "SELECT id FROM users") == []
    (failure,) = await _sql(
        database_url, "SELECT details FROM audit_log WHERE event = 'login.sso_failed'"
    )
    assert '"invalid_nonce"' in failure["details"]


async def test_a_denied_login_is_refused(api: httpx.AsyncClient) -> None:
    url = await _start(api, "corp", redirect_uri=None)
    async with httpx.AsyncClient(timeout=10) as browser:
        denied = await browser.post(url, data={"action": "deny"})
    assert denied.status_code == 302
    location = denied.headers["location"]
    assert "error=access_denied" in location
    # This provider leaves `state` off its error redirect, so nothing ties it to a login...
    _assert_error(await _callback(api, location), 400, "invalid_state")
    # ...a conforming one (RFC 6749 §4.1.2.1) sends it back, and the login ends as denied.
    (state,) = parse_qs(urlsplit(url).query)["state"]
    with_state = location + "&" + urlencode({"state": state})
    _assert_error(await _callback(api, with_state), 401, "sso_denied")
    _assert_error(await _callback(api, with_state), 400, "invalid_state")  # and is over


async def test_a_client_waiting_on_its_redirect_uri_hears_of_a_failure(
    api: httpx.AsyncClient, idp: MockProvider
) -> None:
    # A desktop client listens on loopback for the redirect: a refusal must reach it there
    # (OAuth's error-response shape) rather than leave it waiting behind an error page.
    idp.put_user("mallory-0009", {"preferred_username": "mallory"})
    url = await _start(api, "corp", redirect_uri=ALLOWED)
    parts = urlsplit(url)
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    params["nonce"] = "nonce-of-another-login"
    tampered = urlunsplit(parts._replace(query=urlencode(params)))

    response = await _callback(api, await _log_in_at_provider(tampered, "mallory-0009"))

    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == ALLOWED
    query = parse_qs(location.query)
    assert query["error"] == ["invalid_nonce"]
    assert "login_code" not in query
    assert query["error_description"][0]
    assert response.headers["cache-control"] == "no-store"


async def test_a_login_code_works_once(api: httpx.AsyncClient, idp: MockProvider) -> None:
    idp.put_user("once-0008", {"preferred_username": "once"})
    url = await _start(api, "corp")
    code = _login_code(await _callback(api, await _log_in_at_provider(url, "once-0008")))
    assert (await api.post("/auth/oidc/exchange", json={"login_code": code})).status_code == 200
    again = await api.post("/auth/oidc/exchange", json={"login_code": code})
    _assert_error(again, 401, "invalid_login_code")
    _assert_error(
        await api.post("/auth/oidc/exchange", json={"login_code": "made-up"}),
        401,
        "invalid_login_code",
    )


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/cb",
        "http://evil.example:8080/cb",
        "https://127.0.0.1:5000/cb",  # loopback is plain http; https must be allow-listed
        "http://127.0.0.1:80@evil.example/",
        "http://127.0.0.1\\@evil.example/",
        "http://127.0.0.1:99999/cb",
        "http://127.0.0.1:5000/cb#fragment",
        ALLOWED + "/more",
        "javascript:alert(1)",
    ],
)
async def test_a_redirect_uri_off_loopback_and_off_the_allowlist_is_refused(
    api: httpx.AsyncClient, redirect_uri: str
) -> None:
    response = await api.post(
        "/auth/login", json={"provider": "corp", "redirect_uri": redirect_uri}
    )
    _assert_error(response, 400, "invalid_redirect_uri")


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:49152/",
        "http://[::1]:5000/cb?client=desktop",
        "http://localhost:8765/oauth/done",
        "http://127.0.0.1/cb",
        ALLOWED,
    ],
)
def test_loopback_and_allow_listed_redirect_uris_pass(redirect_uri: str) -> None:
    assert check_redirect_uri(redirect_uri, [ALLOWED]) == redirect_uri


async def test_an_unknown_provider_is_404(api: httpx.AsyncClient) -> None:
    _assert_error(await api.post("/auth/login", json={"provider": "nope"}), 404, "unknown_provider")


async def test_a_provider_that_is_down_gives_503_and_a_broken_one_502(
    api: httpx.AsyncClient,
) -> None:
    # The server started although "down" cannot be reached; only its logins fail.
    assert (await api.get("/health")).json()["status"] == "ok"
    down = await api.post("/auth/login", json={"provider": "down", "redirect_uri": LOOPBACK})
    _assert_error(down, 503, "sso_provider_unavailable")
    assert "DOWN" in down.json()["error"]["message"]
    broken = await api.post("/auth/login", json={"provider": "broken", "redirect_uri": LOOPBACK})
    _assert_error(broken, 502, "sso_provider_error")
    # The others still work.
    assert (await api.post("/auth/login", json={"provider": "corp"})).status_code == 200


async def test_no_sso_configured_means_no_provider(client: httpx.AsyncClient) -> None:
    _assert_error(
        await client.post("/auth/login", json={"provider": "corp"}), 404, "unknown_provider"
    )
    _assert_error(
        await client.post("/auth/oidc/exchange", json={"login_code": "x"}), 404, "unknown_provider"
    )


async def test_codes_and_tokens_stay_out_of_logs_and_the_audit_log(
    api: httpx.AsyncClient,
    idp: MockProvider,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    idp.put_user("quiet-0009", {"preferred_username": "quiet"})
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="voicechat")
    url = await _start(api, "corp")
    location = await _log_in_at_provider(url, "quiet-0009")
    callback = await _callback(api, location)
    login_code = _login_code(callback)
    tokens = (await api.post("/auth/oidc/exchange", json={"login_code": login_code})).json()
    query = parse_qs(urlsplit(url).query)
    secrets_seen = [
        parse_qs(urlsplit(location).query)["code"][0],
        query["state"][0],
        query["nonce"][0],
        login_code,
        tokens["access_token"],
        tokens["refresh_token"],
    ]
    audit = "".join(str(tuple(row)) for row in await _sql(database_url, "SELECT * FROM audit_log"))
    # The test's own HTTP clients (the app's client, the browser) log their URLs; everything
    # else, the server's calls to the provider included, must carry no secret.
    server_side = "\n".join(
        record.getMessage()
        for record in caplog.records
        if not (
            record.name == "httpx"
            and (API in record.getMessage() or "/oauth2/authorize" in record.getMessage())
        )
    )
    assert "/oauth2/token" in server_side
    for secret in secrets_seen:
        assert secret not in server_side
        assert secret not in audit


# -- ID token checks, one at a time ------------------------------------------------------------
# The provider process always signs correctly; these tokens are forged here, with a key served
# as the provider's JWKS, to show each check refuses on its own.

ISSUER = "https://idp.example"
CLIENT_ID = "voicechat-corp"
CLIENT_SECRET = "a-client-secret-long-enough-for-hmac-keys"
SIGNING_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "subject-1",
        "aud": [CLIENT_ID],
        "exp": now + 300,
        "iat": now,
        "nonce": "the-nonce",
        "at_hash": create_half_hash("the-access-token", "RS256").decode(),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims: dict[str, Any], *, kid: str = "k1", alg: str = "RS256") -> str:
    if alg.startswith("HS"):
        return jwt.encode({"alg": alg}, claims, OctKey.import_key(CLIENT_SECRET))
    return jwt.encode({"alg": alg, "kid": kid}, claims, SIGNING_KEY)


def _unsigned(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}."


async def _verify(token: str, algorithms: tuple[str, ...] = ("RS256",)) -> dict[str, Any]:
    jwks_fetches: list[httpx.Request] = []

    def serve_jwks(request: httpx.Request) -> httpx.Response:
        jwks_fetches.append(request)
        return httpx.Response(200, json=KeySet([SIGNING_KEY]).as_dict())

    config = OidcProvider(
        id="corp",
        name="Corp",
        issuer=ISSUER,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    metadata = ProviderMetadata(
        issuer=ISSUER,
        authorization_endpoint=f"{ISSUER}/authorize",
        token_endpoint=f"{ISSUER}/token",
        userinfo_endpoint=None,
        jwks_uri=f"{ISSUER}/jwks",
        id_token_algorithms=algorithms,
        token_auth_method="client_secret_basic",
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve_jwks)) as http:
        provider = IdentityProvider(config, http)
        return await provider.verify_id_token(
            metadata, token, nonce="the-nonce", access_token="the-access-token"
        )


async def test_a_well_formed_id_token_passes() -> None:
    assert (await _verify(_sign(_claims())))["sub"] == "subject-1"
    # HMAC tokens are accepted only when advertised, and keyed with the client secret.
    hmac_token = _sign(_claims(at_hash=None), alg="HS256")
    assert (await _verify(hmac_token, ("RS256", "HS256")))["sub"] == "subject-1"


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (_unsigned(_claims()), "invalid_id_token"),
        (_sign(_claims(at_hash=None), alg="HS256"), "invalid_id_token"),  # not advertised
        (_sign(_claims(), kid="rotated-away"), "invalid_id_token"),
        (_sign(_claims())[:-4] + "AAAA", "invalid_id_token"),
        (_sign(_claims(iss="https://other.example")), "invalid_id_token"),
        (_sign(_claims(aud=["someone-else"])), "invalid_id_token"),
        (_sign(_claims(aud=[CLIENT_ID, "other"], azp="other")), "invalid_id_token"),
        (_sign(_claims(exp=int(time.time()) - 600)), "invalid_id_token"),
        (_sign(_claims(iat=int(time.time()) + 3600)), "invalid_id_token"),
        (_sign(_claims(iat=None)), "invalid_id_token"),
        (_sign(_claims(sub=None)), "invalid_id_token"),
        (_sign(_claims(at_hash="bm90LXRoZS1oYXNo")), "invalid_id_token"),
        (_sign(_claims(nonce="another-nonce")), "invalid_nonce"),
        (_sign(_claims(nonce=None)), "invalid_nonce"),
        (_sign(_claims(nonce="nonce-\u00e9\u00e8")), "invalid_nonce"),
        ("not a jwt", "invalid_id_token"),
    ],
    ids=[
        "alg-none",
        "hs256-not-advertised",
        "unknown-kid",
        "bad-signature",
        "wrong-iss",
        "wrong-aud",
        "wrong-azp",
        "expired",
        "iat-in-future",
        "no-iat",
        "no-sub",
        "wrong-at-hash",
        "wrong-nonce",
        "no-nonce",
        "non-ascii-nonce",
        "garbage",
    ],
)
async def test_an_id_token_failing_one_check_is_refused(token: str, code: str) -> None:
    with pytest.raises(Unauthorized) as refused:
        await _verify(token, ("RS256", "none"))  # `none` is dropped even if advertised
    assert refused.value.code == code


def _discovery(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token",
        "jwks_uri": f"{ISSUER}/jwks",
        "id_token_signing_alg_values_supported": ["RS256", "none"],
    }
    document.update(changes)
    return {k: v for k, v in document.items() if v is not None}


async def _discover(document: dict[str, Any]) -> ProviderMetadata:
    def serve(request: httpx.Request) -> httpx.Response:
        assert request.url == f"{ISSUER}/.well-known/openid-configuration"
        return httpx.Response(200, json=document)

    config = OidcProvider(
        id="corp",
        name="Corp",
        issuer=ISSUER,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        return await IdentityProvider(config, http).metadata()


async def test_discovery_never_keeps_alg_none() -> None:
    metadata = await _discover(_discovery())
    assert metadata.id_token_algorithms == ("RS256",)
    assert metadata.userinfo_endpoint is None


@pytest.mark.parametrize(
    "document",
    [
        _discovery(issuer="https://impostor.example"),
        _discovery(token_endpoint="http://idp.example/token"),  # https issuer, http endpoint
        _discovery(jwks_uri=None),
        _discovery(id_token_signing_alg_values_supported=["none"]),
    ],
    ids=["other-issuer", "plain-http-endpoint", "no-jwks", "only-none"],
)
async def test_unusable_discovery_is_a_bad_gateway(document: dict[str, Any]) -> None:
    with pytest.raises(BadGateway) as refused:
        await _discover(document)
    assert refused.value.status == 502


async def test_a_served_instance_starts_with_a_dead_provider_and_logs_in_through_a_live_one(
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    idp: MockProvider,
    tmp_path: Path,
) -> None:
    """`voicechat serve` with providers from `VOICECHAT_OIDC_PROVIDERS`, one of them down."""
    configured = [
        _config("corp", idp.issuer).model_dump(mode="json"),
        _config("down", f"http://127.0.0.1:{free_port()}").model_dump(mode="json"),
    ]
    configured[0]["client_secret"] = "secret-of-corp"
    configured[1]["client_secret"] = "secret-of-down"
    server = live_server_factory(
        {
            "VOICECHAT_DATABASE_URL": database_url,
            "VOICECHAT_VALKEY_URL": clean_valkey,
            "VOICECHAT_DATA_DIR": str(tmp_path / "live-data"),
            "VOICECHAT_OIDC_PROVIDERS": json.dumps(configured),
        }
    )
    idp.put_user("served-0010", {"preferred_username": "served", "email": "s@example.org"})
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        down = await http.post("/auth/login", json={"provider": "down"})
        _assert_error(down, 503, "sso_provider_unavailable")
        started = await http.post(
            "/auth/login", json={"provider": "corp", "redirect_uri": LOOPBACK}
        )
        assert started.status_code == 200, started.text
        url = started.json()["authorization_url"]
        assert parse_qs(urlsplit(url).query)["redirect_uri"] == [
            f"{server.base_url}/auth/oidc/callback"
        ]
        async with httpx.AsyncClient(timeout=10) as browser:
            submitted = await browser.post(url, data={"sub": "served-0010"})
        callback = await http.get(submitted.headers["location"])
        code = _login_code(callback)
        tokens = (await http.post("/auth/oidc/exchange", json={"login_code": code})).json()
        me = await http.get("/users/@me", headers=bearer(tokens["access_token"]))
    assert me.json()["username"] == "served"
    assert me.json()["email"] == "s@example.org"
    redirect = parse_qs(urlsplit(submitted.headers["location"]).query)
    for secret in (
        redirect["code"][0],
        redirect["state"][0],
        code,
        tokens["access_token"],
        tokens["refresh_token"],
    ):
        assert secret not in server.log


async def test_guessing_login_codes_is_rate_limited_as_documented(sso_settings: Settings) -> None:
    # The exchange counts against the per-IP login limit; OpenAPI lists its 429 (the fuzzer
    # cannot reach it: its server has no SSO provider).
    app = create_app(sso_settings.model_copy(update={"rate_limit_login_ip": "3/5minutes"}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=API) as api:
            for _ in range(3):
                guess = await api.post("/auth/oidc/exchange", json={"login_code": "made-up"})
                _assert_error(guess, 401, "invalid_login_code")
            limited = await api.post("/auth/oidc/exchange", json={"login_code": "made-up"})
            _assert_error(limited, 429, "rate_limited")
            assert int(limited.headers["retry-after"]) >= 1
            document = (await api.get("/openapi.json")).json()
    responses = document["paths"]["/auth/oidc/exchange"]["post"]["responses"]
    assert responses["429"]["headers"]["Retry-After"]["required"]
