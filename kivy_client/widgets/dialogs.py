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
    popup = Popup(title=title, content=content, size_hint=(None, None), size=(dp(380), dp(190)))
    yes = FlatButton(text=action, bg=theme.DANGER)

    def accept(*_args: object) -> None:
        popup.dismiss()
        on_yes()

    yes.bind(on_release=accept)
    return _open_with_buttons(popup, content, yes)


def pick_file(on_chosen: Callable[[str], None], start: Path | None = None) -> Popup:
    """Choose one file (double-click or Attach)."""
    content = BoxLayout(orientation="vertical", spacing=dp(8), padding=dp(8))
    chooser = FileChooserListView(path=str(start or Path.home()))
    content.add_widget(chooser)
    popup = Popup(title="Attach a file", content=content, size_hint=(0.8, 0.8))

    def choose(*_args: object) -> None:
        if chooser.selection:
            popup.dismiss()
            on_chosen(chooser.selection[0])

    attach = FlatButton(text="Attach")
    attach.bind(on_release=choose)
    chooser.bind(on_submit=choose)
    return _open_with_buttons(popup, content, attach)


def _open_with_buttons(popup: Popup, content: BoxLayout, action: FlatButton) -> Popup:
    """Put Cancel and `action` under the dialog's content, and show it."""
    buttons = BoxLayout(size_hint_y=None, height=dp(40), spacing=dp(8))
    cancel = FlatButton(text="Cancel", bg=theme.SELECTED)
    cancel.bind(on_release=lambda *_: popup.dismiss())
    buttons.add_widget(cancel)
    buttons.add_widget(action)
    content.add_widget(buttons)
    popup.open()
    return popup
