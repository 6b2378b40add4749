"""Access tokens: short-lived EdDSA JWTs, the algorithm pinned on decode.

A client presents the same token on every request for its 15 minutes, so a token that verified
is remembered (by its SHA-256, with its claims) until it expires: the Ed25519 check and the
claim checks run once per token per process, not once per request.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from uuid import UUID, uuid4

import jwt

from voicechat.error_codes import ErrorCode
from voicechat.errors import Unauthorized
from voicechat.server_keys import ServerKeys

ALGORITHM = "EdDSA"
AUDIENCE = "voicechat-api"
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti", "sid"]
LEEWAY_SECONDS = 5
#: Verified tokens remembered at most (the oldest is forgotten first).
MAX_VERIFIED = 20_000


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says."""

    user_id: UUID
    session_id: UUID
    token_id: str
    expires_at: int


class AccessTokens:
    """Signs and verifies access tokens with the server's Ed25519 key."""

    def __init__(self, keys: ServerKeys, *, issuer: str, ttl_seconds: int) -> None:
        self._private = keys.jwt_private_key
        self._public = keys.jwt_public_key
        self.issuer = issuer
        self.ttl_seconds = ttl_seconds
        self._verified: dict[bytes, AccessClaims] = {}

    def issue(self, user_id: UUID, session_id: UUID) -> str:
        """A token for `user_id` in `session_id`, valid for the configured TTL."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": str(user_id),
            "sid": str(session_id),
            "jti": uuid4().hex,
            "iat": now,
            "exp": now + self.ttl_seconds,
        }
        return jwt.encode(claims, self._private, algorithm=ALGORITHM)

    def verify(self, token: str) -> AccessClaims:
        """Check signature, algorithm, issuer, audience and lifetime.

        Raises:
            Unauthorized: for any defect; the message never says which check failed.
        """
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        known = self._verified.get(digest)
        if known is not None:
            if time.time() <= known.expires_at + LEEWAY_SECONDS:
                return known
            del self._verified[digest]
        claims = self._verify(token)
        if len(self._verified) >= MAX_VERIFIED:
            self._verified.pop(next(iter(self._verified)))
        self._verified[digest] = claims
        return claims

    def _verify(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=self.issuer,
                options={"require": _REQUIRED_CLAIMS},
                leeway=LEEWAY_SECONDS,
            )
            return AccessClaims(
                user_id=UUID(claims["sub"]),
                session_id=UUID(claims["sid"]),
                token_id=str(claims["jti"]),
                expires_at=int(claims["exp"]),
            )
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            raise Unauthorized(
                "invalid or expired access token", code=ErrorCode.INVALID_TOKEN
            ) from None
