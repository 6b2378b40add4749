"""Small building blocks: flat buttons, text fields, presence dots, section headers."""

from __future__ import annotations

from typing import Any

from kivy.properties import BooleanProperty, ColorProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.textinput import TextInput
from kivy.uix.widget import Widget


class FlatButton(Button):  # type: ignore[misc]
    """A button drawn as a flat rounded rectangle."""

    bg = ColorProperty((0.345, 0.396, 0.949, 1))


class Field(TextInput):  # type: ignore[misc]
    """A one-line text field in the dark theme."""


class Dot(Widget):  # type: ignore[misc]
    """A small filled circle: presence, speaking."""

    color = ColorProperty((0.5, 0.5, 0.5, 1))


class SectionLabel(Label):  # type: ignore[misc]
    """An upper-case section header (categories, member groups)."""


class ClickableLabel(ButtonBehavior, Label):  # type: ignore[misc]
    """A label that reacts to clicks (sidebar rows, member rows)."""

    selected = BooleanProperty(False)
    hover_text = StringProperty("")


class Reveal(BoxLayout):  # type: ignore[misc]
    """A box shown or hidden in place (`shown`). Hidden, it takes no touches: its collapsed
    children may lie over other widgets."""

    shown = BooleanProperty(True)

    def on_touch_down(self, touch: Any) -> Any:
        return super().on_touch_down(touch) if self.shown else False

    def on_touch_move(self, touch: Any) -> Any:
        return super().on_touch_move(touch) if self.shown else False

    def on_touch_up(self, touch: Any) -> Any:
        return super().on_touch_up(touch) if self.shown else False
