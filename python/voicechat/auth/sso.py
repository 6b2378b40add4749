"""SSO through OpenID Connect providers (placeholder until the SSO work lands)."""

from __future__ import annotations


class SsoService:
    """Starts and finishes OIDC logins against the configured providers."""

    async def start(self, provider: str, redirect_uri: str | None) -> str:
        """The provider's authorization URL for a new login."""
        raise NotImplementedError
