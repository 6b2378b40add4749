"""GET /search/messages over 1,000,000 generated messages, against the bare SQL in the same run.

For a common word, a rare word, a phrase and a prefix: the route's latency (in-process ASGI,
one user who sees every channel: auth, rate limit, visibility, ranking, snippets, JSON) and the
same tsquery's ranked top 26 run bare through asyncpg on the same data (the reference). It also
times migration 0012 on the filled table (the rewrite and the GIN index an upgrade costs).

Run (short, on a quiet machine), under `flock -x /tmp/voicechat-bench.lock`:
`.venv/bin/pytest benches/test_search.py -q -s -p no:cacheprovider -n 0`
`SEARCH_BENCH_MESSAGES` (default 1000000) and `SEARCH_BENCH_ROUNDS` (default 30) change the size.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable

import asyncpg
import httpx

from tests.conftest import _scratch_database
from tests.utils.auth import api_user
from voicechat.api import create_app
from voicechat.db.migrate import apply_migrations, load_migrations
from voicechat.settings import Settings

MESSAGES = int(os.environ.get("SEARCH_BENCH_MESSAGES", "1000000"))
ROUNDS = int(os.environ.get("SEARCH_BENCH_ROUNDS", "30"))

# A skewed vocabulary (random() * random() favours the first words) plus one rare token per
# message out of 50,000, so "word123" matches 20 messages in a million.
_WORDS = [
    *("the", "a", "voice", "chat", "game", "tonight", "raid", "guild", "server", "play"),
    *("stream", "music", "join", "call", "lag", "ping", "fps", "map", "team", "win", "lose"),
    *("ok", "lol", "gg", "brb", "afk"),
]
_SEED = """
INSERT INTO users (username, password_hash) SELECT 'user' || n, 'x' FROM generate_series(1, 1000) n;
INSERT INTO channels (name, type) SELECT 'channel-' || n, 'text' FROM generate_series(1, 10) n;
"""
_MESSAGES = """
INSERT INTO messages (id, channel_id, user_id, content)
SELECT uuidv7(), (SELECT array_agg(id) FROM channels)[1 + n % 10],
    (SELECT array_agg(id) FROM users)[1 + n % 1000],
    (SELECT string_agg(w[1 + (random() * random() * (array_length(w, 1) - 1))::int], ' ')
        || ' word' || (n % 50000)
     FROM generate_series(1, 8 + n % 8), (SELECT $1::text[] AS w) AS ww WHERE n > 0)
FROM generate_series(1, $2::int) n
"""
# The reference: what any search of these words must do at least (match, rank, top 26).
_BARE = """
SELECT m.id, ts_rank_cd(m.search_vector, q) AS rank
FROM messages m, websearch_to_tsquery('voicechat_search', $1) AS q
WHERE m.search_vector @@ q
ORDER BY rank DESC, m.id DESC
LIMIT 26
"""
_BARE_PREFIX = _BARE.replace("websearch_to_tsquery('voicechat_search', $1)", "to_tsquery($1)")

# (name, what the route gets, what the bare query gets)
_QUERIES = [
    ("common word", "raid", "raid"),
    ("rare word", "word12345", "word12345"),
    ("phrase", '"voice chat"', '"voice chat"'),
    ("prefix", "stre", "stre:*"),
]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def test_search_latency_against_bare_sql(
    postgres_dsn: str, clean_valkey: str, settings_factory: Callable[..., Settings]
) -> None:
    with _scratch_database(postgres_dsn, "template1") as url:
        asyncio.run(_run(url, clean_valkey, settings_factory))


async def _run(url: str, valkey_url: str, settings_factory: Callable[..., Settings]) -> None:
    conn = await asyncpg.connect(url)
    try:
        migrations = load_migrations()
        await apply_migrations(conn, [m for m in migrations if m.version < 12])
        await conn.execute(_SEED)
        started = time.perf_counter()
        await conn.execute(_MESSAGES, _WORDS, MESSAGES)
        await conn.execute("VACUUM ANALYZE messages")
        print(f"\nseeded {MESSAGES} messages in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        await apply_migrations(conn)
        print(f"migration 0012 on {MESSAGES} messages: {time.perf_counter() - started:.1f} s")
        await conn.execute("VACUUM ANALYZE messages")
        settings = settings_factory(
            database_url=url, valkey_url=valkey_url, rate_limit_search="1000000/minute"
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                # The first user is the administrator: every channel is visible to them.
                user = await api_user(http, "searcher")
                print(f"{'query':<12} {'route p50/p99 ms':>18} {'bare p50/p99 ms':>17} ratio")
                for name, q, bare_q in _QUERIES:
                    bare_sql = _BARE_PREFIX if name == "prefix" else _BARE
                    route_ms: list[float] = []
                    bare_ms: list[float] = []
                    for _ in range(ROUNDS):
                        # Interleaved, so both see the same machine.
                        started = time.perf_counter()
                        response = await user.get("/search/messages", params={"q": q})
                        route_ms.append((time.perf_counter() - started) * 1000)
                        assert response.status_code == 200, response.text
                        started = time.perf_counter()
                        await conn.fetch(bare_sql, bare_q)
                        bare_ms.append((time.perf_counter() - started) * 1000)
                    r50, r99 = _percentiles(route_ms)
                    b50, b99 = _percentiles(bare_ms)
                    print(
                        f"{name:<12} {r50:>8.1f} / {r99:<8.1f} {b50:>7.1f} / {b99:<8.1f}"
                        f" {r50 / b50:>5.2f}x  ({len(response.json()['results'])} results)"
                    )
    finally:
        await conn.close()
    print(f"load average {os.getloadavg()}")
