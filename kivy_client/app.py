"""The Kivy application: one window, a screen manager, toasts, and the bridge from the SDK's
change notifications to redraws.

Everything runs on one asyncio loop (`App.async_run(async_lib="asyncio")`): SDK coroutines
are started with :meth:`VoicechatApp.spawn`, which turns any failure into a readable toast
instead of a traceback. SDK changes only mark parts of the window dirty; one Clock trigger per
frame redraws them, so a burst of events costs one redraw and an idle window draws nothing.
While nothing happens for a couple of seconds, Kivy's loop also wakes less often
(`kivy_client.idle`).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import webbrowser
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from kivy.app import App
from kivy.base import ExceptionHandler, ExceptionManager
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.lang import Builder
from kivy.properties import BooleanProperty, ObjectProperty, StringProperty
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.screenmanager import NoTransition, ScreenManager

from kivy_client import KV_DIR
from kivy_client.idle import IdleRate
from kivy_client.running import ClientScreen
from kivy_client.widgets import common  # noqa: F401  (registers the kv widget classes)
from voicechat.sdk.app import AppSession, ClientSettings, readable_error

if TYPE_CHECKING:
    from kivy_client.screens.login import LoginScreen
    from kivy_client.screens.main import MainScreen
    from voicechat.sdk.app import Change, EngineFactory

log = logging.getLogger("voicechat.client")

# Screens by name, each built on first use (login at start). Named, not imported, so that
# screens can import `kivy_client.running` without a cycle back to this module.
_SCREENS = {
    "login": "kivy_client.screens.login:LoginScreen",
    "main": "kivy_client.screens.main:MainScreen",
    "settings": "kivy_client.screens.settings:SettingsScreen",
}


class RootLayout(FloatLayout):  # type: ignore[misc]
    """The window's content: the screens, and a toast above them."""


class _ToastOnError(ExceptionHandler):  # type: ignore[misc]
    """Exceptions escaping Kivy callbacks become a toast and a log line, not a crash."""

    def __init__(self, app: VoicechatApp) -> None:
        super().__init__()
        self.app = app

    def handle_exception(self, inst: BaseException) -> Any:
        if isinstance(inst, KeyboardInterrupt | SystemExit):
            return ExceptionManager.RAISE
        log.error("client: unhandled error", exc_info=inst)
        self.app.toast(readable_error(inst) if isinstance(inst, Exception) else str(inst))
        return ExceptionManager.PASS


class VoicechatApp(App):  # type: ignore[misc]
    """The desktop client.

    Args:
        server_url: preset for the login screen's server field.
        settings: client settings (default: loaded from the user config dir).
        engine_factory: how calls get their audio engine (default: the sound devices).
        open_browser: opens the SSO provider's page (default: the system browser).
    """

    title = "voicechat"
    # What `kivy_client.running.running_app` recognises this app by.
    is_voicechat_client = True
    session: AppSession | None = ObjectProperty(None, allownone=True)
    connection_state = StringProperty("offline")
    toast_text = StringProperty("")
    # Whether text cursors blink (the kv rule of `Field` follows it; see kivy_client.idle).
    cursor_blink = BooleanProperty(True)

    def __init__(
        self,
        server_url: str | None = None,
        settings: ClientSettings | None = None,
        *,
        engine_factory: EngineFactory | None = None,
        open_browser: Callable[[str], object] = webbrowser.open,
    ) -> None:
        super().__init__()
        self.settings: ClientSettings = settings if settings is not None else _load_settings()
        self.engine_factory = engine_factory
        self.open_browser = open_browser
        self.server_url_hint = server_url or self.settings.server_url or ""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dirty: set[str] = set()
        self._redraw = Clock.create_trigger(self._flush_changes, 0)
        self._hide_toast = Clock.create_trigger(self._clear_toast, 4.0)
        self._unsubscribe: Callable[[], None] | None = None
        self._error_handler = _ToastOnError(self)
        self.idle_rate = IdleRate()
        self.idle_rate.bind(cursor_blink=self.setter("cursor_blink"))
        # Set once the first screen (login or main) is showing: tests and the start-up
        # measurement wait on it.
        self.ready = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    def build(self) -> RootLayout:
        Builder.load_file(str(KV_DIR / "app.kv"))
        root = RootLayout()
        manager: ScreenManager = root.ids.screens
        manager.transition = NoTransition()
        manager.add_widget(_build_screen("login"))
        Window.clearcolor = (0.19, 0.2, 0.22, 1)
        self.idle_rate.start()
        return root

    async def run_async(self) -> None:
        """Run the window on the current asyncio loop until it closes."""
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_exception)
        ExceptionManager.add_handler(self._error_handler)
        try:
            self.spawn(self._boot(), "restoring your session")
            await self.async_run(async_lib="asyncio")
        finally:
            self.idle_rate.stop()
            ExceptionManager.remove_handler(self._error_handler)
            await self._shutdown()

    async def _boot(self) -> None:
        problem = self.settings.problem  # unreadable settings.json: defaults are in use
        if problem:
            # From the first frame on: before it, Kivy's clock still has its import-time
            # reading and the toast's 4 s would already be over.
            Clock.schedule_once(lambda _dt: self.toast(problem), 0)
        try:
            session = await AppSession.resume(self.settings, engine_factory=self.engine_factory)
        except Exception as exc:
            log.info("client: stored session not resumed", exc_info=True)
            self.show_screen("login")
            self.login_screen().show_error(readable_error(exc))
            session = None
        if session is None:
            self.show_screen("login")
            self.ready.set()
            return
        await self.enter(session)

    async def enter(self, session: AppSession) -> None:
        """Show the main screen for a logged-in session."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.session = session
        if self.manager.has_screen("main"):
            self.main_screen().reset()  # a new session: nothing of the last one shows
        self._unsubscribe = session.subscribe(self._on_change)
        await session.start()
        self.connection_state = str(session.state)
        self.show_screen("main")
        self._dirty.add("*")
        self._redraw()
        self.ready.set()

    async def _session_ended(self, session: AppSession) -> None:
        """Back to Login, saying why (a ban says so: `AppSession.ended_reason`)."""
        reason = await session.ended_reason()
        await self.leave_session(logout=False)
        if reason:
            self.login_screen().show_error(reason)

    async def leave_session(self, *, logout: bool) -> None:
        """Close the session (and end it on the server when `logout`) and show Login."""
        session, self.session = self.session, None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if session is not None:
            if logout:
                await session.logout()
            else:
                await session.close()
        self.show_screen("login")

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.session is not None:
            try:
                await self.session.close()
            except Exception:
                log.warning("client: closing the session failed", exc_info=True)

    # -- screens ------------------------------------------------------------------------------

    @property
    def manager(self) -> ScreenManager:
        """The screen manager."""
        manager: ScreenManager = self.root.ids.screens
        return manager

    def screen(self, name: str) -> ClientScreen:
        """The screen called `name`, built on first use."""
        if not self.manager.has_screen(name):
            self.manager.add_widget(_build_screen(name))
        screen: ClientScreen = self.manager.get_screen(name)
        return screen

    def login_screen(self) -> LoginScreen:
        """The Login screen."""
        return cast("LoginScreen", self.screen("login"))

    def main_screen(self) -> MainScreen:
        """The main screen (built on first use)."""
        return cast("MainScreen", self.screen("main"))

    def show_screen(self, name: str) -> None:
        """Switch to a screen (redrawing it from the session first)."""
        screen = self.screen(name)
        if isinstance(screen, ClientScreen) and self.session is not None:
            screen.refresh({"*"})
        self.manager.current = name

    # -- SDK bridge ---------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], doing: str) -> asyncio.Task[Any]:
        """Run an SDK coroutine; a failure shows as "Could not <doing>: <reason>"."""

        async def guarded() -> Any:
            try:
                return await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("client: %s failed", doing, exc_info=True)
                self.toast(f"Could not {doing}: {readable_error(exc)}")
                return None

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_change(self, change: Change) -> None:
        self.idle_rate.wake()  # the redraw below runs at the next wake-up of the loop
        if change.kind == "session_ended":
            # Logged out elsewhere or the tokens were revoked: back to Login, saying why.
            session = self.session
            if session is not None and self.manager.current != "login":
                self.spawn(self._session_ended(session), "close the session")
            return
        self._dirty.add(str(change.kind))
        self._redraw()

    def _flush_changes(self, _dt: float) -> None:
        kinds, self._dirty = self._dirty, set()
        session = self.session
        if session is None:
            return
        self.connection_state = str(session.state)
        if "error" in kinds and session.error:
            self.toast(session.error)
            session.clear_error()
        current = self.manager.current_screen
        if isinstance(current, ClientScreen):
            current.refresh(kinds)

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        log.error("client: %s", context.get("message"), exc_info=exc)
        if isinstance(exc, Exception):
            self.toast(readable_error(exc))

    # -- toasts -------------------------------------------------------------------------------

    def toast(self, text: str) -> None:
        """Show a short message at the bottom of the window for a few seconds."""
        self.toast_text = text
        self._hide_toast.cancel()
        self._hide_toast()

    def _clear_toast(self, _dt: float) -> None:
        self.toast_text = ""


def _build_screen(name: str) -> ClientScreen:
    module_name, _, class_name = _SCREENS[name].partition(":")
    screen: ClientScreen = getattr(importlib.import_module(module_name), class_name)(name=name)
    return screen


def _load_settings() -> ClientSettings:
    try:
        return ClientSettings.load()
    except Exception:
        log.warning("client: settings unreadable, using defaults", exc_info=True)
        return ClientSettings()
