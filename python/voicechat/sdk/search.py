"""Server search results (`Client.search_messages`) and their highlighted snippets.

docs/search.md describes the query syntax and what the server searches: plaintext channels
only; encrypted channels and DMs are searched on the device, over decrypted messages.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from uuid import UUID

from voicechat.sdk.models import Message

_MARK = re.compile(r"<mark>(.*?)</mark>", re.DOTALL)


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One match: the message, its channel, how well it matched, and a snippet."""

    message: Message
    channel_id: UUID
    #: HTML-escaped text with the matches between `<mark>` and `</mark>`; see `segments`.
    highlight: str
    rank: float

    def segments(self) -> list[tuple[str, bool]]:
        """The snippet as plain text pieces, each with whether it is a match."""
        return highlight_segments(self.highlight)


@dataclass(frozen=True, slots=True)
class SearchResults:
    """A page of results, best first; `next_cursor` continues it."""

    results: list[SearchResult]
    has_more: bool
    next_cursor: str | None


def highlight_segments(highlight: str) -> list[tuple[str, bool]]:
    """Split a server highlight into (text, matched) pieces, unescaped, for any renderer.

    A GUI that does not render HTML (Kivy markup, a terminal) draws each piece itself, escaping
    it for its own markup: the message's text never becomes markup.
    """
    pieces: list[tuple[str, bool]] = []
    position = 0
    for match in _MARK.finditer(highlight):
        if match.start() > position:
            pieces.append((html.unescape(highlight[position : match.start()]), False))
        pieces.append((html.unescape(match[1]), True))
        position = match.end()
    if position < len(highlight):
        pieces.append((html.unescape(highlight[position:]), False))
    return pieces
