"""The main screen's keyboard: push-to-talk, Esc, Up to edit, Ctrl+M / Ctrl+D / Ctrl+,."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kivy.core.window import Window

from kivy_client.running import running_app

if TYPE_CHECKING:
    from kivy_client.screens.main import MainScreen


def key_name(key: int) -> str:
    """Kivy's name for a key code (`"f8"`, `"enter"`, `"a"`)."""
    return str(Window._system_keyboard.keycode_to_string(key))


class MainShortcuts:
    """Window key handlers for one main screen; they act only while it is the screen shown."""

    def __init__(self, screen: MainScreen) -> None:
        self._screen = screen

    def _showing(self) -> bool:
        screen = self._screen
        return screen.manager is not None and screen.manager.current == screen.name

    def _ptt_key(self) -> str | None:
        settings = running_app().settings
        if settings.audio.mode != "push_to_talk":
            return None
        return str(settings.ptt_key)

    def key_down(self, _window: Any, key: int, _scancode: int, _text: Any, mods: Any) -> Any:
        """Window `on_key_down`: True when the key was the screen's."""
        if not self._showing():
            return False
        screen = self._screen
        name = key_name(key)
        ptt = self._ptt_key()
        composer = screen.ids.composer
        if ptt is not None and name == ptt and screen.in_voice:
            session = screen.session
            if session is not None:
                session.push_to_talk(True)
            return not composer.focus
        if name == "escape":
            if screen.messages.menu is not None:
                screen.messages.menu.dismiss()
                screen.messages.menu = None
            if screen.editing is not None:
                composer.text = ""
            screen.cancel_compose_state()
            return True
        if name == "up" and composer.focus and not composer.text:
            return screen.edit_last_own()
        ctrl = "ctrl" in (mods or [])
        if ctrl and name == "m" and screen.in_voice:
            screen.toggle_mute()
            return True
        if ctrl and name == "d" and screen.in_voice:
            screen.toggle_deafen()
            return True
        if ctrl and name == ",":
            screen.open_settings()
            return True
        return False

    def key_up(self, _window: Any, key: int, *_args: Any) -> Any:
        """Window `on_key_up`: the end of push-to-talk."""
        if not self._showing():
            return False
        screen = self._screen
        ptt = self._ptt_key()
        if ptt is not None and screen.in_voice and key_name(key) == ptt:
            session = screen.session
            if session is not None:
                session.push_to_talk(False)
            return True
        return False
