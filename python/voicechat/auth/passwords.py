"""Argon2id password hashing with equal-time failure paths."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# OWASP's minimum for Argon2id: 19 MiB, 2 passes, 1 lane.
MEMORY_KIB = 19 * 1024
TIME_COST = 2
PARALLELISM = 1


class Passwords:
    """Hashes and verifies passwords off the event loop (Argon2 holds a core for ~30 ms)."""

    def __init__(
        self,
        *,
        memory_kib: int = MEMORY_KIB,
        time_cost: int = TIME_COST,
        parallelism: int = PARALLELISM,
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        # Verified against when the username is unknown, so that both failures cost the same.
        self._decoy = self._hasher.hash("voicechat-decoy-password")

    async def hash(self, password: str) -> str:
        """A PHC-format Argon2id hash."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Check `password`; with no stored hash, spend the same time and say no."""
        return await asyncio.to_thread(self._verify, stored_hash, password)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            self._hasher.verify(stored_hash or self._decoy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters than today's."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True
