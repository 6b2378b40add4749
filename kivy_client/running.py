"""What screens and widgets know of the app: the screen base class and the running app.

The app builds its screens by name (`VoicechatApp.screen`), and screens reach the app through
`running_app()`, typed against `VoicechatApp` for the checker only. So `kivy_client.app`
imports no screen and no screen imports `kivy_client.app` at run time: the arrows point one way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from kivy.app import App
from kivy.uix.screenmanager import Screen

if TYPE_CHECKING:
    from kivy_client.app import VoicechatApp


class ClientScreen(Screen):  # type: ignore[misc]
    """A screen that redraws parts of itself when the session changes."""

    def refresh(self, kinds: set[str]) -> None:
        """Redraw what depends on these change kinds (`"*"`: everything)."""


def running_app() -> VoicechatApp:
    """The running client, for screens and widgets.

    Raises:
        LookupError: no voicechat client is running.
    """
    app = App.get_running_app()
    # `VoicechatApp` sets this class attribute; checking it keeps this module free of a
    # run-time import of the app (which imports the screens' registry).
    if not getattr(app, "is_voicechat_client", False):
        raise LookupError("the voicechat client is not running")
    return cast("VoicechatApp", app)
