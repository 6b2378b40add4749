"""'Last used' is written in batches, not by every request (auth/live_sessions.py)."""

from __future__ import annotations

import time
from uuid import uuid4

from voicechat.auth.sessions import SessionStore
from voicechat.cache import create_cache, keys


async def test_last_used_moves_forward_and_never_revives_an_ended_session(
    clean_valkey: str,
) -> None:
    cache = create_cache(clean_valkey)
    try:
        store = SessionStore(cache, ttl_seconds=60, grace_seconds=10)
        live, _ = await store.create(uuid4(), ip="127.0.0.1", user_agent="test")
        ended, _ = await store.create(uuid4(), ip="127.0.0.1", user_agent="test")
        await store.revoke(ended)
        created = (await store.get(live)).last_used_at  # type: ignore[union-attr]
        later = int(time.time()) + 30

        await store.mark_used({live: later, ended: later, uuid4(): later})
        info = await store.get(live)
        assert info is not None
        assert info.last_used_at == later
        assert await store.get(ended) is None
        assert not await cache.exists(keys.session(ended))

        await store.mark_used({live: created})  # an older time noted by a slower process
        info = await store.get(live)
        assert info is not None
        assert info.last_used_at == later
    finally:
        await cache.aclose()
