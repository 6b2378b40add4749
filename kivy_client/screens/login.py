"""Login: server address, password login or registration, SSO providers, the MFA code."""

from __future__ import annotations

from collections.abc import Coroutine
from functools import partial
from typing import Any

from kivy.clock import Clock
from kivy.lang import Builder
from kivy.properties import BooleanProperty, StringProperty

from kivy_client import KV_DIR
from kivy_client.running import ClientScreen, running_app
from kivy_client.widgets.common import FlatButton
from voicechat.sdk.app import AppSession, MfaChallenge, MfaRequired, readable_error

Builder.load_file(str(KV_DIR / "login.kv"))


class LoginScreen(ClientScreen):
    """The first screen: who you are and on which server.

    `busy` disables the buttons while a request runs; `mfa` swaps the password form for the
    code prompt after the server asked for the second factor.
    """

    error = StringProperty("")
    busy = BooleanProperty(False)
    mfa = BooleanProperty(False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._challenge: MfaChallenge | None = None
        self._providers_for = ""
        self._fetch_providers = Clock.create_trigger(self._load_providers, 0.6)
        Clock.schedule_once(self._prefill, 0)

    def _prefill(self, _dt: float) -> None:
        app = running_app()
        self.ids.server.text = app.server_url_hint
        self.ids.username.text = app.settings.username or ""
        if self.ids.server.text:
            self._fetch_providers()

    def on_pre_enter(self, *_args: Any) -> None:
        """Back to Login (e.g. after logging out): look up the providers again."""
        self._providers_for = ""
        self._fetch_providers()

    @property
    def server_url(self) -> str:
        """The server field, with `http://` added when no scheme was typed."""
        url = str(self.ids.server.text).strip().rstrip("/")
        if url and "://" not in url:
            url = f"http://{url}"
        return url

    def show_error(self, text: str) -> None:
        """Show a readable error under the form."""
        self.error = text

    def on_server_text(self) -> None:
        """The server field changed: look up its SSO providers shortly after typing stops."""
        self._fetch_providers()

    # -- actions ------------------------------------------------------------------------------

    def submit(self, *, register: bool = False) -> None:
        """Log in (or register) with the form's username and password."""
        server, username = self.server_url, self.ids.username.text.strip()
        password = self.ids.password.text
        if not server or not username or not password:
            self.show_error("Enter the server address, your username and your password.")
            return
        self._run(self._password(server, username, password, register=register))

    def submit_code(self) -> None:
        """Finish a login with the code from the authenticator app."""
        code = self.ids.code.text.strip()
        if not code:
            self.show_error("Enter the 6-digit code from your authenticator app.")
            return
        self._run(self._code(code))

    def cancel_mfa(self) -> None:
        """Back to the password form (closing the half-finished login)."""
        challenge, self._challenge = self._challenge, None
        self.mfa, self.error = False, ""
        if challenge is not None:
            running_app().spawn(challenge.cancel(), "cancel the sign-in")

    def start_sso(self, provider_id: str) -> None:
        """Log in through a provider in the system browser."""
        if not self.server_url:
            self.show_error("Enter the server address first.")
            return
        self._run(self._sso(self.server_url, provider_id))

    # -- coroutines ---------------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        self.error, self.busy = "", True
        app = running_app()

        async def run() -> None:
            try:
                await coro
            except MfaRequired as needed:
                self._challenge = needed.challenge
                self.mfa = True
                Clock.schedule_once(lambda _dt: setattr(self.ids.code, "focus", True), 0)
            except Exception as exc:
                self.show_error(readable_error(exc))
            finally:
                self.busy = False

        app.spawn(run(), "log in")

    async def _password(self, server: str, username: str, password: str, *, register: bool) -> None:
        app = running_app()
        settings = app.settings
        factory = app.engine_factory
        if register:
            session = await AppSession.register(
                server, username, password, settings=settings, engine_factory=factory
            )
        else:
            session = await AppSession.login(
                server, username, password, settings=settings, engine_factory=factory
            )
        self.ids.password.text = ""
        await app.enter(session)

    async def _code(self, code: str) -> None:
        app = running_app()
        if self._challenge is None:
            return  # cancelled meanwhile
        session = await AppSession.complete_mfa(self._challenge, code)
        self.mfa, self._challenge = False, None
        self.ids.code.text = self.ids.password.text = ""
        await app.enter(session)

    async def _sso(self, server: str, provider_id: str) -> None:
        app = running_app()
        session = await AppSession.sso(
            server,
            provider_id,
            settings=app.settings,
            open_browser=app.open_browser,
            engine_factory=app.engine_factory,
        )
        await app.enter(session)

    def _load_providers(self, _dt: float) -> None:
        server = self.server_url
        if not server or server == self._providers_for:
            return
        self._providers_for = server

        async def load() -> None:
            box = self.ids.sso_buttons
            try:
                providers = await AppSession.sso_providers(server)
            except Exception:
                # An unreachable server shows up when the user logs in; look again later.
                self._providers_for = ""
                providers = []
            if server != self._providers_for:
                return
            box.clear_widgets()
            for provider in providers:
                button = FlatButton(text=f"Continue with {provider.name}", bg=(0.25, 0.26, 0.28, 1))
                button.bind(on_release=partial(lambda pid, *_: self.start_sso(pid), provider.id))
                box.add_widget(button)

        running_app().spawn(load(), "load the sign-in providers")
