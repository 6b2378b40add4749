"""Full-text search over the plaintext messages of the channels a user can read right now.

The design (docs/search.md has the user's side):

- The index is migration 0012's `messages.search_vector`, a STORED generated column built with
  the text-search configuration `voicechat_search` (a copy of `simple`); every query
  here names the same configuration, or the GIN index would not serve it.
- A user's text becomes a tsquery only through PostgreSQL's own parsers: `websearch_to_tsquery`
  for the syntax (phrases in quotes, `-word`, `or`), and for the last word as typed a prefix
  query built from its lexemes by `search_prefix_query` (migration 0012), swapped in for a
  placeholder word by `ts_rewrite`. No user text is ever pasted into tsquery syntax.
- Visibility is the one rule, `channel_permissions(channel, user)`, evaluated inside the
  search statement itself, so the statement's snapshot decides: a message of a channel the
  user just left or lost is never returned. Encrypted channels and DMs are skipped outright
  (their messages carry no plaintext and have no index entry anyway).
- Ranked by `ts_rank_cd`, ties newest first; pages continue from a keyset (rank, id), so a
  message sent meanwhile never shifts a page already read. `ts_headline` (costly: it re-parses
  the text) runs on the page's rows only.
- Both statements run in one transaction under a local `statement_timeout`: a query that would
  pin the database is cancelled by PostgreSQL and answers 503 `search_timeout`.
"""

from __future__ import annotations

import html
import secrets
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from voicechat.db.pool import Connection

# The page's rows are the message page's rows: same columns, same author profile, same
# attachments, built by the same `StoredMessage.from_record`.
from voicechat.db.repositories.messages import _MESSAGE_SELECT, StoredMessage
from voicechat.error_codes import ErrorCode
from voicechat.errors import ServiceUnavailable

#: The text-search configuration of migration 0012; the index and every query use it.
SEARCH_CONFIG = "voicechat_search"

#: The last word gets a prefix match from this many characters on ("voi" finds "voice");
#: shorter ones must match whole (a one- or two-letter prefix matches much of the index).
MIN_PREFIX_CHARS = 3
#: Within that word, a lexeme shorter than this still matches whole (the "l" of "l'été").
MIN_PREFIX_LEXEME_CHARS = 2

#: Snippet shape: at most this many words around the best match (PostgreSQL's own default).
_HEADLINE_WORDS = "MaxWords=35, MinWords=15"

# One statement: the transaction's timeout, then the user's tsquery. `$3` is the last word
# (NULL: no prefix), `$4` the placeholder word that stands for it in `$2 || ' ' || $4`.
BUILD_QUERY = """
SELECT set_config('statement_timeout', $1, true) AS timeout, q.query::text AS query,
    numnode(q.query) AS nodes, querytree(q.query) AS indexable
FROM (
    SELECT CASE
        WHEN $3::text IS NULL THEN websearch_to_tsquery('voicechat_search', $2)
        ELSE COALESCE(
            ts_rewrite(websearch_to_tsquery('voicechat_search', $2 || ' ' || $4),
                       $4::tsquery, search_prefix_query($3, $5)),
            websearch_to_tsquery('voicechat_search', $2))
    END AS query
) AS q
"""

# $1 caller, $2 channel filter, $3 tsquery, $4 author, $5/$6 before/after ids,
# $7/$8 before/after times, $9/$10 the cursor's (rank, id), $11 rows, $12 headline options.
SEARCH_PAGE = f"""
WITH visible AS (
    SELECT c.id FROM channels c
    WHERE NOT c.encrypted
      AND ($2::uuid IS NULL OR c.id = $2)
      AND channel_permissions(c.id, $1) IS NOT NULL
),
hits AS (
    SELECT m.id, ts_rank_cd(m.search_vector, $3::tsquery) AS rank
    FROM messages m
    WHERE m.search_vector @@ $3::tsquery
      AND m.channel_id IN (SELECT id FROM visible)
      AND ($4::uuid IS NULL OR m.user_id = $4)
      AND ($5::uuid IS NULL OR m.id < $5)
      AND ($6::uuid IS NULL OR m.id > $6)
      AND ($7::timestamptz IS NULL OR m.created_at < $7)
      AND ($8::timestamptz IS NULL OR m.created_at > $8)
),
page AS (
    SELECT h.id, h.rank FROM hits h
    WHERE $9::real IS NULL OR h.rank < $9 OR (h.rank = $9 AND h.id < $10)
    ORDER BY h.rank DESC, h.id DESC
    LIMIT $11
)
SELECT p.rank AS search_rank,
    ts_headline('voicechat_search', msg.content, $3::tsquery, $12) AS search_headline,
    msg.*
FROM page p
CROSS JOIN LATERAL ({_MESSAGE_SELECT} WHERE m.id = p.id) AS msg
ORDER BY p.rank DESC, p.id DESC
"""  # noqa: S608 (constant fragments, no user input)


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """What narrows a search besides its words."""

    channel_id: UUID | None = None
    author_id: UUID | None = None
    before_id: UUID | None = None
    after_id: UUID | None = None
    before_time: datetime | None = None
    after_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class SearchPosition:
    """Where a page of ranked results starts: after this (rank, id)."""

    rank: float
    message_id: UUID


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One result: the message, how well it matched, and its highlighted snippet."""

    message: StoredMessage
    rank: float
    #: A snippet of the content, HTML-escaped, the matches between `<mark>` and `</mark>`.
    highlight: str


def split_last_word(q: str) -> tuple[str, str | None]:
    """The query without its last word, and that word when it should match as a prefix.

    The last word is typed still (search as you type) unless the text ends with a space. It
    does not get a prefix inside an open or closed phrase, as a negation (`-word`), as the
    operator `or`, or when shorter than `MIN_PREFIX_CHARS`.
    """
    if not q or q[-1].isspace():
        return q, None
    word = q.split()[-1]
    if (
        len(word) < MIN_PREFIX_CHARS
        or '"' in word
        or q.count('"') % 2
        or word.startswith("-")
        or word.lower() == "or"
    ):
        return q, None
    return q[: len(q) - len(word)], word


def render_headline(headline: str, start: str, stop: str) -> str:
    """`ts_headline`'s output with its random delimiters as `<mark>` tags, the rest escaped.

    The delimiters are random per search, so text in a message (a literal `<mark>`, HTML)
    can never pass for a highlight: it is escaped like everything else.
    """
    pieces: list[str] = []
    for i, part in enumerate(headline.split(start)):
        if i == 0:
            pieces.append(html.escape(part.replace(stop, "")))
            continue
        marked, _, rest = part.partition(stop)
        pieces.append(f"<mark>{html.escape(marked)}</mark>{html.escape(rest.replace(stop, ''))}")
    return "".join(pieces)


class MessageSearch:
    """Ranked full-text search of the messages one user may read."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def search(
        self,
        user_id: UUID,
        q: str,
        filters: SearchFilters,
        *,
        limit: int,
        start_after: SearchPosition | None,
        timeout_ms: int,
    ) -> tuple[list[SearchHit], bool]:
        """A page of results, best first, and whether more follow.

        Args:
            user_id: the caller; only channels they may read now are searched.
            q: the user's query (websearch syntax; the last word also matches as a prefix).
            filters: channel, author and time bounds.
            limit: results on the page.
            start_after: the last result of the previous page (None: the first page).
            timeout_ms: PostgreSQL cancels the search past this.

        Raises:
            ServiceUnavailable: `search_timeout`, the search ran past `timeout_ms`.
        """
        head, last_word = split_last_word(q)
        placeholder = f"vcprefix{secrets.token_hex(8)}"
        start, stop = f"vcs{secrets.token_hex(8)}", f"vce{secrets.token_hex(8)}"
        headline_options = f"StartSel={start}, StopSel={stop}, {_HEADLINE_WORDS}"
        try:
            async with self._conn.transaction():
                built = await self._conn.fetchrow(
                    BUILD_QUERY, str(timeout_ms), head, last_word, placeholder,
                    MIN_PREFIX_LEXEME_CHARS,
                )  # fmt: skip
                # No lexeme at all (punctuation), or only negations (`-word`, which no index
                # can serve and which would read every message): nothing to find.
                if built is None or not built["nodes"] or built["indexable"] == "T":
                    return [], False
                rows = await self._conn.fetch(
                    SEARCH_PAGE,
                    user_id,
                    filters.channel_id,
                    built["query"],
                    filters.author_id,
                    filters.before_id,
                    filters.after_id,
                    filters.before_time,
                    filters.after_time,
                    None if start_after is None else start_after.rank,
                    None if start_after is None else start_after.message_id,
                    limit + 1,
                    headline_options,
                )
        except asyncpg.QueryCanceledError:
            raise ServiceUnavailable(
                "the search took too long; narrow it with rarer words, a channel, an author "
                "or a time range",
                code=ErrorCode.SEARCH_TIMEOUT,
            ) from None
        hits = [
            SearchHit(
                message=StoredMessage.from_record(row),
                rank=row["search_rank"],
                highlight=render_headline(row["search_headline"] or "", start, stop),
            )
            for row in rows[:limit]
        ]
        return hits, len(rows) > limit
