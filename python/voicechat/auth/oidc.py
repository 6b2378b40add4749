"""One configured OpenID Connect provider, as `auth.sso` uses it: discovery, the
authorization URL, the code exchange, ID token verification and UserInfo.

Metadata and keys are fetched lazily and cached per process (`METADATA_TTL_SECONDS`); every
call to the provider has short timeouts and a size cap, and an answer we cannot use is a 502,
an unreachable provider a 503. Tokens and codes never reach a log.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from authlib.oauth2.rfc6749.parameters import (  # type: ignore[import-untyped]
    prepare_grant_uri,
)
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from authlib.oidc.core import CodeIDToken  # type: ignore[import-untyped]
from joserfc import jws, jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet, OctKey

from voicechat.error_codes import ErrorCode
from voicechat.errors import (
    BadGateway,
    ServiceUnavailable,
    Unauthorized,
)
from voicechat.settings import OidcProvider

log = logging.getLogger(__name__)

METADATA_TTL_SECONDS = 3600
CLOCK_LEEWAY_SECONDS = 60
MAX_PROVIDER_RESPONSE_BYTES = 512 * 1024
#: Seconds one call to a provider may take in all (docs/reliability.md).
PROVIDER_DEADLINE_SECONDS = 5.0

_HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_CLIENT_SECRET_POST = "client_secret_post"  # noqa: S105 (a method name)
# A provider's `error` parameter is logged and audited only when it looks like an OAuth code.
PROVIDER_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What discovery tells about a provider, checked."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str | None
    jwks_uri: str
    id_token_algorithms: tuple[str, ...]
    token_auth_method: str


class IdentityProvider:
    """One configured OIDC provider: discovery, the authorization URL, the code exchange,
    ID token verification and UserInfo. Metadata and keys are cached in this process."""

    def __init__(self, config: OidcProvider, http: httpx.AsyncClient) -> None:
        self.config = config
        self._http = http
        self._metadata: ProviderMetadata | None = None
        self._metadata_fetched = 0.0
        self._keys: KeySet | None = None
        self._lock = asyncio.Lock()

    @property
    def id(self) -> str:
        """The provider's configured id."""
        return self.config.id

    async def _get_json(self, url: str, what: str, **kwargs: Any) -> Any:
        return _json_body(await self._request("GET", url, what, **kwargs), what, self.id)

    async def _request(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            # httpx's timeouts bound each connect and each read; this bounds the whole call,
            # so a provider that trickles its answer cannot hold a sign-in for long either.
            async with asyncio.timeout(PROVIDER_DEADLINE_SECONDS):
                return await self._http.request(method, url, **kwargs)
        except (TimeoutError, httpx.TimeoutException, httpx.NetworkError) as exc:
            log.warning("SSO provider %s: %s unreachable: %s", self.id, what, type(exc).__name__)
            raise ServiceUnavailable(
                f"the identity provider {self.config.name!r} cannot be reached; try again later",
                code=ErrorCode.SSO_PROVIDER_UNAVAILABLE,
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            log.warning("SSO provider %s: %s failed: %s", self.id, what, type(exc).__name__)
            raise _bad_gateway(self.config) from None

    def _fresh(self) -> bool:
        return time.monotonic() - self._metadata_fetched < METADATA_TTL_SECONDS

    async def metadata(self) -> ProviderMetadata:
        """The provider's discovery document, fetched on first use and again after an hour.

        Raises:
            ServiceUnavailable: the provider cannot be reached.
            BadGateway: the document is missing, malformed, or names another issuer.
        """
        if self._metadata is not None and self._fresh():
            return self._metadata
        async with self._lock:
            if self._metadata is None or not self._fresh():
                url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
                document = await self._get_json(url, "discovery")
                self._metadata = _parse_metadata(self.config, document)
                self._metadata_fetched = time.monotonic()
                self._keys = None
            return self._metadata

    async def _key_set(self, metadata: ProviderMetadata, *, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            document = await self._get_json(metadata.jwks_uri, "jwks")
            try:
                self._keys = KeySet.import_key_set(document)
            except (JoseError, KeyError, TypeError, ValueError):
                log.warning("SSO provider %s: the JWKS holds no usable key", self.id)
                raise _bad_gateway(self.config) from None
        return self._keys

    def authorization_url(
        self,
        metadata: ProviderMetadata,
        *,
        redirect_uri: str,
        state: str,
        nonce: str,
        verifier: str,
    ) -> str:
        """Where to send the person's browser: code flow with PKCE S256, state and nonce."""
        url: str = prepare_grant_uri(
            metadata.authorization_endpoint,
            self.config.client_id,
            "code",
            redirect_uri=redirect_uri,
            scope=" ".join(self.config.scopes),
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        return url

    async def exchange_code(
        self, metadata: ProviderMetadata, code: str, *, verifier: str, redirect_uri: str
    ) -> tuple[str, str]:
        """The ID token and access token for an authorization code."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        secret = self.config.client_secret.get_secret_value()
        auth: tuple[str, str] | None = None
        if metadata.token_auth_method == _CLIENT_SECRET_POST:
            form |= {"client_id": self.config.client_id, "client_secret": secret}
        else:
            # RFC 6749 §2.3.1: both halves are form-encoded before Basic encoding.
            auth = (quote(self.config.client_id, safe=""), quote(secret, safe=""))
        response = await self._request(
            "POST",
            metadata.token_endpoint,
            "token",
            data=form,
            auth=auth,
            headers={"Accept": "application/json"},
        )
        if 400 <= response.status_code < 500:
            error = _provider_error(response)
            log.info("SSO provider %s refused the authorization code: %s", self.id, error)
            raise Unauthorized(
                "the identity provider refused the login; start again",
                code=ErrorCode.SSO_CODE_REJECTED,
            )
        body = _json_body(response, "token", self.id)
        id_token = body.get("id_token") if isinstance(body, dict) else None
        access_token = body.get("access_token") if isinstance(body, dict) else None
        token_type = body.get("token_type") if isinstance(body, dict) else None
        if (
            not isinstance(id_token, str)
            or not isinstance(access_token, str)
            or not isinstance(token_type, str)
            or token_type.lower() != "bearer"
        ):
            log.warning("SSO provider %s: token response lacks id_token or bearer token", self.id)
            raise _bad_gateway(self.config)
        return id_token, access_token

    async def verify_id_token(
        self, metadata: ProviderMetadata, id_token: str, *, nonce: str, access_token: str
    ) -> dict[str, Any]:
        """The ID token's claims, once signature and claims pass (OIDC Core §3.1.3.7).

        Raises:
            Unauthorized: `invalid_id_token` or `invalid_nonce`.
        """
        try:
            header = jws.extract_compact(id_token.encode()).headers()
        except (JoseError, ValueError, TypeError):
            raise _invalid_id_token("it is not a compact JWS") from None
        algorithm = header.get("alg")
        if (
            not isinstance(algorithm, str)
            or algorithm.lower() == "none"
            or algorithm not in metadata.id_token_algorithms
        ):
            raise _invalid_id_token(f"algorithm {algorithm!r} is not allowed")
        try:
            if algorithm in _HMAC_ALGORITHMS:
                secret = self.config.client_secret.get_secret_value()
                token = jwt.decode(id_token, OctKey.import_key(secret), algorithms=[algorithm])
            else:
                key_set = await self._key_set(metadata)
                try:
                    token = jwt.decode(id_token, key_set, algorithms=[algorithm])
                except InvalidKeyIdError:
                    # The provider rotated its keys since we fetched them.
                    key_set = await self._key_set(metadata, refresh=True)
                    token = jwt.decode(id_token, key_set, algorithms=[algorithm])
        except JoseError as exc:
            raise _invalid_id_token(type(exc).__name__) from None
        claims = dict(token.claims)
        stated = claims.get("nonce")
        if not isinstance(stated, str) or not hmac.compare_digest(stated.encode(), nonce.encode()):
            raise Unauthorized(
                "the identity provider's answer does not belong to this login",
                code=ErrorCode.INVALID_NONCE,
            )
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or iat > time.time() + CLOCK_LEEWAY_SECONDS:
            raise _invalid_id_token("iat is missing or in the future")
        checked = CodeIDToken(
            claims,
            token.header,
            options={
                "iss": {"essential": True, "value": metadata.issuer},
                "aud": {"essential": True, "value": self.config.client_id},
                "sub": {"essential": True},
                "exp": {"essential": True},
            },
            params={
                "nonce": nonce,
                "client_id": self.config.client_id,
                "access_token": access_token,
            },
        )
        try:
            checked.validate(leeway=CLOCK_LEEWAY_SECONDS)
        except JoseError as exc:
            raise _invalid_id_token(type(exc).__name__) from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise _invalid_id_token("sub is missing")
        return claims

    async def userinfo(
        self, metadata: ProviderMetadata, access_token: str, subject: str
    ) -> dict[str, Any]:
        """UserInfo claims; empty when the provider has no UserInfo endpoint.

        Raises:
            Unauthorized: UserInfo names another subject (OIDC Core §5.3.2).
        """
        if metadata.userinfo_endpoint is None:
            return {}
        response = await self._request(
            "GET",
            metadata.userinfo_endpoint,
            "userinfo",
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
        body = _json_body(response, "userinfo", self.id)
        if not isinstance(body, dict):
            raise _bad_gateway(self.config)
        if body.get("sub") != subject:
            raise Unauthorized(
                "the identity provider's UserInfo is about someone else",
                code=ErrorCode.INVALID_USERINFO,
            )
        return body


def _parse_metadata(config: OidcProvider, document: Any) -> ProviderMetadata:
    if not isinstance(document, dict):
        raise _bad_gateway(config)
    issuer = document.get("issuer")
    # OIDC Discovery §4.3: the issuer in the document is the one we asked about.
    if not isinstance(issuer, str) or issuer.rstrip("/") != config.issuer.rstrip("/"):
        log.warning("SSO provider %s: discovery names issuer %r", config.id, issuer)
        raise _bad_gateway(config)
    endpoints: dict[str, str | None] = {}
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        value = document.get(name)
        if value is None and name == "userinfo_endpoint":
            endpoints[name] = None
            continue
        if not isinstance(value, str) or not value.startswith(("https://", "http://")):
            log.warning("SSO provider %s: discovery lacks a usable %s", config.id, name)
            raise _bad_gateway(config)
        if issuer.startswith("https://") and not value.startswith("https://"):
            log.warning("SSO provider %s: %s is not https", config.id, name)
            raise _bad_gateway(config)
        endpoints[name] = value
    advertised = document.get("id_token_signing_alg_values_supported", ["RS256"])
    if not isinstance(advertised, list):
        raise _bad_gateway(config)
    # `none` is never accepted; HMAC ones verify with the client secret (OIDC Core §10.1).
    algorithms = tuple(a for a in advertised if isinstance(a, str) and a.lower() != "none")
    if not algorithms:
        log.warning("SSO provider %s: no acceptable ID token algorithm", config.id)
        raise _bad_gateway(config)
    methods = document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    basic = isinstance(methods, list) and "client_secret_basic" in methods
    post = isinstance(methods, list) and "client_secret_post" in methods
    auth_method = _CLIENT_SECRET_POST if post and not basic else "client_secret_basic"
    authorization_endpoint = endpoints["authorization_endpoint"]
    token_endpoint = endpoints["token_endpoint"]
    jwks_uri = endpoints["jwks_uri"]
    assert authorization_endpoint is not None
    assert token_endpoint is not None
    assert jwks_uri is not None
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=authorization_endpoint,
        token_endpoint=token_endpoint,
        userinfo_endpoint=endpoints["userinfo_endpoint"],
        jwks_uri=jwks_uri,
        id_token_algorithms=algorithms,
        token_auth_method=auth_method,
    )


def _json_body(response: httpx.Response, what: str, provider_id: str) -> Any:
    if response.status_code != 200 or len(response.content) > MAX_PROVIDER_RESPONSE_BYTES:
        log.warning("SSO provider %s: %s answered %d", provider_id, what, response.status_code)
        raise BadGateway(
            "the identity provider answered with an error; try again later",
            code=ErrorCode.SSO_PROVIDER_ERROR,
        )
    try:
        return response.json()
    except ValueError:
        log.warning("SSO provider %s: %s is not JSON", provider_id, what)
        raise BadGateway(
            "the identity provider answered with something unreadable",
            code=ErrorCode.SSO_PROVIDER_ERROR,
        ) from None


def _provider_error(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return f"status {response.status_code}"
    return error if isinstance(error, str) and PROVIDER_ERROR_CODE.match(error) else "unknown"


def _bad_gateway(config: OidcProvider) -> BadGateway:
    return BadGateway(
        f"the identity provider {config.name!r} gave an answer we cannot use; "
        "an operator should check its configuration",
        code=ErrorCode.SSO_PROVIDER_ERROR,
    )


def _invalid_id_token(why: str) -> Unauthorized:
    log.info("SSO ID token refused: %s", why)
    return Unauthorized(
        "the identity provider's ID token is not valid", code=ErrorCode.INVALID_ID_TOKEN
    )
