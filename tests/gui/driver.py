"""Driving the real client window like a person: touches at a widget's position, typed text
and key presses through the window's keyboard, screenshots of what is on screen.

Import only after the display fixture has set up Kivy's environment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kivy.clock import Clock
from kivy.core.window import Window
from kivy.tests.common import UnitTestTouch
from PIL import Image

# Kivy key codes for the keys the tests press.
KEYS = {
    "enter": (13, 40),
    "escape": (27, 41),
    "up": (273, 82),
    "f8": (289, 65),
    "f9": (290, 66),
    "m": (109, 16),
}


async def frames(count: int = 3) -> None:
    """Let the window run a few frames (layout, then drawing): `count` wake-ups of Kivy's
    loop, which come up to 30 times a second, or 10 while the client is idle."""
    done = asyncio.Event()
    seen = 0

    def tick(_dt: float) -> bool:
        nonlocal seen
        seen += 1
        if seen >= count:
            done.set()
            return False  # unschedules it
        return True

    Clock.schedule_interval(tick, 0)
    await done.wait()


async def wait_until(predicate: Callable[[], Any], what: str, within: float = 20.0) -> Any:
    """Poll `predicate` while the window keeps running; its first truthy value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def tap(widget: Any) -> None:
    """Press and release the mouse over the middle of `widget`."""
    await frames(1)  # a widget added just now is placed by the next layout pass
    x, y = widget.to_window(*widget.center)
    touch = UnitTestTouch(x, y)
    touch.touch_down()
    await frames(1)
    touch.touch_up()
    await frames(2)


async def wheel(
    widget: Any, direction: str, *, until: Callable[[], bool], what: str, notches: int = 5
) -> None:
    """Turn the mouse wheel over `widget` ("up" shows older content), `notches` at a time,
    until `until()`."""
    x, y = widget.to_window(*widget.center)
    button = "scrolldown" if direction == "up" else "scrollup"  # Kivy's names, inverted

    def turned() -> bool:
        if until():
            return True
        for _ in range(notches):
            touch = UnitTestTouch(x, y)
            touch.profile.append("button")
            touch.button = button
            touch.touch_down()
            touch.touch_up()
        return False

    await wait_until(turned, what)


async def tap_slider(slider: Any, fraction: float) -> None:
    """Click a slider's track at `fraction` (0 = min, 1 = max) of its length."""
    left = slider.x + slider.padding
    x = left + fraction * (slider.width - 2 * slider.padding)
    wx, wy = slider.to_window(x, slider.center_y)
    touch = UnitTestTouch(wx, wy)
    touch.touch_down()
    await frames(1)
    touch.touch_up()
    await frames(2)


async def type_text(text: str) -> None:
    """Type into the focused text field."""
    for char in text:
        Window.dispatch("on_textinput", char)
    await frames(1)


async def press(key: str, modifiers: list[str] | None = None) -> None:
    """Press and release a named key."""
    code, scancode = KEYS[key]
    Window.dispatch("on_key_down", code, scancode, None, modifiers or [])
    await frames(1)
    Window.dispatch("on_key_up", code, scancode)
    await frames(1)


def walk(root: Any) -> Iterator[Any]:
    """Every widget under `root`."""
    yield from root.walk(restrict=True)


def find(root: Any, kind: type, **attributes: Any) -> list[Any]:
    """Widgets of a class whose attributes have these values (`root=None`: the whole window,
    popups and menus included)."""
    widgets = (
        (w for child in list(Window.children) for w in walk(child)) if root is None else walk(root)
    )
    return [
        widget
        for widget in widgets
        if isinstance(widget, kind)
        and all(getattr(widget, name, None) == value for name, value in attributes.items())
    ]


def label_texts(root: Any) -> list[str]:
    """The text of every label on screen under `root`."""
    from kivy.uix.label import Label

    return [w.text for w in walk(root) if isinstance(w, Label) and w.text]


def _colours_and_size(path: Path) -> tuple[Any, tuple[int, int]]:
    with Image.open(path) as image:
        return image.convert("RGB").getcolors(maxcolors=1 << 16), image.size


async def screenshot(path: Path, *, check: bool = True) -> Path:
    """Save the window as a PNG at `path` and check it shows something."""
    await frames(4)
    # Kivy inserts a counter before the extension (login.png -> login0001.png).
    written = Path(Window.screenshot(name=str(path)))
    await asyncio.to_thread(written.replace, path)
    if not check:
        return path
    colours, (width, height) = await asyncio.to_thread(_colours_and_size, path)
    assert (width, height) == (Window.width, Window.height)
    # A blank or single-colour window would have a handful of colours at most; text,
    # anti-aliasing and the panels give hundreds.
    assert colours is None or len(colours) > 50, f"{path.name} looks blank"
    return path
