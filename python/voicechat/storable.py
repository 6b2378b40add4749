"""What the server can store: the rule the HTTP input guard and the gateway's frame parser share.

Python's `json` decodes things PostgreSQL (and UTF-8) cannot hold: NUL (`\\u0000`, refused in
`text` and `jsonb`), lone surrogates (`\\ud800`, not encodable as UTF-8), `NaN`/`Infinity`
(not JSON, refused by `jsonb`), integers past 64 bits (no column holds them), and nesting deep
enough to exhaust a recursive decoder. Refusing them once, where a request enters, keeps every
route and repository free of per-field checks (docs/reliability.md, "Bad input").

Imports nothing from the rest of voicechat, so the API and the gateway can both use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Containers (objects and arrays) nested deeper than this are refused.
MAX_DEPTH = 64
#: The signed 64-bit range of PostgreSQL's `bigint`.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Unstorable:
    """Where a value the server cannot store sits, and why it cannot."""

    path: Path
    reason: str

    @property
    def field(self) -> str:
        """The dotted path of the field (`messages.<id>.*.body`), as validation errors name it."""
        return ".".join(str(part) for part in self.path)


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored, or None when it can."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate, which is not valid Unicode"
    return None


def find_unstorable(value: object, path: Path = ()) -> Unstorable | None:
    """The first value in decoded JSON (`value`, found at `path`) the server cannot store.

    Walks objects (keys and values) and arrays without recursion, in document order.
    """
    stack: list[tuple[Path, object, int]] = [(path, value, 0)]
    while stack:
        where, item, depth = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return Unstorable(where, problem)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                return Unstorable(where, "is out of the 64-bit integer range")
        elif isinstance(item, float):
            if not math.isfinite(item):
                return Unstorable(where, "is not a finite number")
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                return Unstorable(where, f"nests deeper than {MAX_DEPTH} levels")
            children: list[tuple[Path, object, int]] = []
            if isinstance(item, dict):
                for key, child in item.items():
                    problem = text_problem(key) if isinstance(key, str) else None
                    if problem is not None:
                        # The key itself stays out of the path: it may not be encodable.
                        return Unstorable(where, f"has a key that {problem}")
                    children.append(((*where, key), child, depth + 1))
            else:
                children = [((*where, i), child, depth + 1) for i, child in enumerate(item)]
            stack.extend(reversed(children))
    return None
