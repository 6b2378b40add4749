"""Modal dialogs: a confirmation and a file picker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kivy.metrics import dp
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.filechooser import FileChooserListView
from kivy.uix.label import Label
from kivy.uix.popup import Popup

from kivy_client import theme
from kivy_client.widgets.common import FlatButton


def confirm(title: str, text: str, action: str, on_yes: Callable[[], None]) -> Popup:
    """Ask before doing something that cannot be undone."""
    content = BoxLayout(orientation="vertical", spacing=dp(12), padding=dp(12))
    content.add_widget(Label(text=text, color=theme.TEXT))
    buttons = BoxLayout(size_hint_y=None, height=dp(40), spacing=dp(8))
    popup = Popup(title=title, content=content, size_hint=(None, None), size=(dp(380), dp(190)))
    cancel = FlatButton(text="Cancel", bg=theme.SELECTED)
    yes = FlatButton(text=action, bg=theme.DANGER)
    cancel.bind(on_release=lambda *_: popup.dismiss())

    def accept(*_args: object) -> None:
        popup.dismiss()
        on_yes()

    yes.bind(on_release=accept)
    buttons.add_widget(cancel)
    buttons.add_widget(yes)
    content.add_widget(buttons)
    popup.open()
    return popup


def pick_file(on_chosen: Callable[[str], None], start: Path | None = None) -> Popup:
    """Choose one file (double-click or Attach)."""
    content = BoxLayout(orientation="vertical", spacing=dp(8), padding=dp(8))
    chooser = FileChooserListView(path=str(start or Path.home()))
    content.add_widget(chooser)
    buttons = BoxLayout(size_hint_y=None, height=dp(40), spacing=dp(8))
    popup = Popup(title="Attach a file", content=content, size_hint=(0.8, 0.8))

    def choose(*_args: object) -> None:
        if chooser.selection:
            popup.dismiss()
            on_chosen(chooser.selection[0])

    cancel = FlatButton(text="Cancel", bg=theme.SELECTED)
    attach = FlatButton(text="Attach")
    cancel.bind(on_release=lambda *_: popup.dismiss())
    attach.bind(on_release=choose)
    chooser.bind(on_submit=choose)
    buttons.add_widget(cancel)
    buttons.add_widget(attach)
    content.add_widget(buttons)
    popup.open()
    return popup
