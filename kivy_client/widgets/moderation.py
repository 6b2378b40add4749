"""A member's context menu and the ban, timeout and move dialogs it opens.

Which items the menu shows is decided in `voicechat.sdk.app.moderation` (permissions and the
role hierarchy); these widgets only draw them and hand the choice back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kivy.metrics import dp
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.label import Label
from kivy.uix.popup import Popup
from kivy.uix.spinner import Spinner

from kivy_client import theme
from kivy_client.widgets.common import Field, FlatButton
from voicechat.sdk.app.moderation import BAN_DELETE_CHOICES, TIMEOUT_CHOICES


def member_menu(
    name: str, items: Sequence[tuple[str, Callable[[], object]]], *, danger: frozenset[str]
) -> Popup:
    """The context menu of a member: one button per item, those in `danger` in red."""
    content = BoxLayout(orientation="vertical", spacing=dp(6), padding=dp(8))
    popup = Popup(
        title=name,
        content=content,
        size_hint=(None, None),
        size=(dp(280), dp(90) + dp(46) * len(items)),
    )
    for label, action in items:
        button = FlatButton(
            text=label,
            size_hint_y=None,
            height=dp(40),
            bg=theme.DANGER if label in danger else theme.SELECTED,
        )

        def choose(*_args: object, chosen: Callable[[], object] = action) -> None:
            popup.dismiss()
            chosen()

        button.bind(on_release=choose)
        content.add_widget(button)
    popup.open()
    return popup


def _choice_dialog(
    title: str,
    choice_label: str,
    choices: Sequence[tuple[str, int]],
    action: str,
    on_done: Callable[[int, str], object],
    *,
    with_reason: bool = True,
) -> Popup:
    """A dialog with a drop-down of `choices`, an optional reason, and Cancel / `action`."""
    content = BoxLayout(orientation="vertical", spacing=dp(8), padding=dp(12))
    content.add_widget(Label(text=choice_label, color=theme.TEXT, size_hint_y=None, height=dp(24)))
    labels = [label for label, _value in choices]
    spinner = Spinner(text=labels[0], values=labels, size_hint_y=None, height=dp(40))
    content.add_widget(spinner)
    reason = Field(hint_text="Reason (optional)", multiline=False, size_hint_y=None, height=dp(40))
    if with_reason:
        content.add_widget(reason)
    popup = Popup(title=title, content=content, size_hint=(None, None), size=(dp(400), dp(280)))
    yes = FlatButton(text=action, bg=theme.DANGER)

    def accept(*_args: object) -> None:
        popup.dismiss()
        value = dict(choices)[spinner.text]
        on_done(value, reason.text.strip())

    yes.bind(on_release=accept)
    buttons = BoxLayout(size_hint_y=None, height=dp(40), spacing=dp(8))
    cancel = FlatButton(text="Cancel", bg=theme.SELECTED)
    cancel.bind(on_release=lambda *_: popup.dismiss())
    buttons.add_widget(cancel)
    buttons.add_widget(yes)
    content.add_widget(buttons)
    popup.open()
    return popup


def ban_dialog(name: str, on_ban: Callable[[int, str], object]) -> Popup:
    """Ban `name`: how much of their history to delete (seconds) and a reason."""
    return _choice_dialog(
        f"Ban {name}", "Delete messages of the", BAN_DELETE_CHOICES, "Ban", on_ban
    )


def timeout_dialog(name: str, on_timeout: Callable[[int, str], object]) -> Popup:
    """Time `name` out: for how long (seconds) and a reason."""
    return _choice_dialog(f"Timeout {name}", "For", TIMEOUT_CHOICES, "Timeout", on_timeout)


def move_dialog(
    name: str, channels: Sequence[tuple[str, str]], on_move: Callable[[str], object]
) -> Popup:
    """Move `name` to one of `channels` (label, channel id)."""
    ids = {label: channel_id for label, channel_id in channels}
    numbered = [(label, index) for index, (label, _id) in enumerate(channels)]
    return _choice_dialog(
        f"Move {name}",
        "To the voice channel",
        numbered,
        "Move",
        lambda index, _reason: on_move(ids[channels[index][0]]),
        with_reason=False,
    )
