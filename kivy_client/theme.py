"""Colours and sizes shared by the kv files (`#:import theme kivy_client.theme`)."""

from __future__ import annotations

RGBA = tuple[float, float, float, float]


def hex_rgba(value: str, alpha: float = 1.0) -> RGBA:
    """`#rrggbb` as a Kivy colour."""
    value = value.lstrip("#")
    r, g, b = (int(value[i : i + 2], 16) / 255 for i in (0, 2, 4))
    return (r, g, b, alpha)


SIDEBAR = hex_rgba("#2b2d31")
SIDEBAR_DARK = hex_rgba("#232428")
CHAT = hex_rgba("#313338")
MEMBERS = hex_rgba("#2b2d31")
INPUT = hex_rgba("#383a40")
HOVER = hex_rgba("#404249")
SELECTED = hex_rgba("#4e5058")
TEXT = hex_rgba("#dbdee1")
MUTED_TEXT = hex_rgba("#949ba4")
HEADER_TEXT = hex_rgba("#f2f3f5")
ACCENT = hex_rgba("#5865f2")
DANGER = hex_rgba("#da373c")
WARNING = hex_rgba("#f0b232")
SUCCESS = hex_rgba("#23a55a")
SPEAKING = hex_rgba("#23a55a")
TOAST = hex_rgba("#111214", 0.95)

PRESENCE: dict[str, RGBA] = {
    "online": SUCCESS,
    "idle": WARNING,
    "dnd": DANGER,
    "offline": hex_rgba("#80848e"),
}

# A stable colour per author name, as chat apps colour names by role.
_NAME_COLOURS = ["#f47b67", "#f8a532", "#48dd8c", "#5fb7e6", "#b88cf2", "#ef7fb4", "#e6cc62"]


def name_colour(name: str) -> str:
    """Markup colour (`rrggbb`) for an author name."""
    return _NAME_COLOURS[sum(map(ord, name)) % len(_NAME_COLOURS)].lstrip("#")


def presence_colour(status: str) -> RGBA:
    """The dot colour for a presence status."""
    return PRESENCE.get(status, PRESENCE["offline"])
