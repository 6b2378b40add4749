"""Valkey: sessions, refresh tokens, presence, typing, rate limits and cross-instance events."""

from voicechat.cache.client import Cache, create_cache

__all__ = ["Cache", "create_cache"]
