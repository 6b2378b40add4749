"""Settings: account and presence, two-factor set-up with a QR code, audio devices, noise
suppression, voice activity or push-to-talk (with its key), bitrate, and per-user volume.

Every change is saved at once (`ClientSettings.save`) and handed to the running voice engine
(`AppSession.apply_audio`); there is no separate Apply button.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kivy.core.window import Window
from kivy.lang import Builder
from kivy.metrics import dp
from kivy.properties import BooleanProperty, ListProperty, ObjectProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.label import Label
from kivy.uix.slider import Slider

from kivy_client import KV_DIR, theme
from kivy_client.running import ClientScreen, running_app
from kivy_client.widgets.qr import qr_texture
from voicechat.sdk.app.state import Presence
from voicechat.sdk.app.view_rows import user_label

if TYPE_CHECKING:
    from kivy_client.app import VoicechatApp

Builder.load_file(str(KV_DIR / "settings.kv"))

SYSTEM_DEFAULT = "System default"

# The status spinner's values, as the session takes them.
_PRESENCES: dict[str, Presence] = {p: p for p in ("online", "idle", "dnd", "offline")}


class SettingsScreen(ClientScreen):
    """The settings of this client and of the signed-in account."""

    account_text = StringProperty("")
    mfa_enabled = BooleanProperty(False)
    mfa_step = StringProperty("")  # "" | "scan" | "done"
    mfa_secret = StringProperty("")
    backup_codes = StringProperty("")
    qr = ObjectProperty(None, allownone=True)
    input_devices = ListProperty([SYSTEM_DEFAULT])
    output_devices = ListProperty([SYSTEM_DEFAULT])
    devices_note = StringProperty("")
    capturing_key = BooleanProperty(False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._loading = False
        Window.bind(on_key_down=self._on_key_down)

    @property
    def app(self) -> VoicechatApp:
        """The running client."""
        return running_app()

    def on_pre_enter(self, *_args: Any) -> None:
        self.ids.scroll.scroll_y = 1.0  # open at the top
        self._load_devices()
        self.refresh({"*"})

    # -- drawing ------------------------------------------------------------------------------

    def refresh(self, kinds: set[str]) -> None:
        session, settings = self.app.session, self.app.settings
        me = session.me if session is not None else None
        if me is not None:
            self.account_text = (
                f"Signed in as [b]{user_label(me)}[/b] (@{me.username}) on {settings.server_url}"
            )
            self.mfa_enabled = bool(me.mfa_enabled)
            self.ids.presence.text = str(me.status)
        self._loading = True
        try:
            audio = settings.audio
            self.ids.input_device.text = audio.input_device or SYSTEM_DEFAULT
            self.ids.output_device.text = audio.output_device or SYSTEM_DEFAULT
            self.ids.noise_suppression.active = bool(audio.noise_suppression)
            self.ids.mode_voice.state = "down" if audio.mode == "voice_activity" else "normal"
            self.ids.mode_ptt.state = "down" if audio.mode == "push_to_talk" else "normal"
            self.ids.bitrate.value = (audio.bitrate or 64000) // 1000
        finally:
            self._loading = False
        if "*" in kinds or "members" in kinds:
            self._draw_volumes()

    def _draw_volumes(self) -> None:
        session, settings = self.app.session, self.app.settings
        box = self.ids.volumes
        box.clear_widgets()
        if session is None:
            return
        me = session.me
        for member in session.member_list():
            user_id = member.user.id
            if me is not None and user_id == me.id:
                continue
            row = BoxLayout(size_hint_y=None, height=dp(36), spacing=dp(8))
            row.add_widget(
                Label(
                    text=user_label(member.user),
                    color=theme.TEXT,
                    size_hint_x=None,
                    width=dp(160),
                    halign="left",
                    text_size=(dp(160), None),
                    shorten=True,
                )
            )
            volume = settings.user_volumes.get(str(user_id), 1.0)
            slider = Slider(min=0, max=200, step=5, value=volume * 100)
            value_label = Label(text=f"{volume * 100:.0f}%", size_hint_x=None, width=dp(50))
            slider.bind(
                value=lambda _s, v, uid=str(user_id), lab=value_label: self._set_volume(uid, v, lab)
            )
            row.add_widget(slider)
            row.add_widget(value_label)
            box.add_widget(row)

    # -- account ------------------------------------------------------------------------------

    def back(self) -> None:
        """Back to the chat."""
        self.capturing_key = False
        self.app.show_screen("main")

    def log_out(self) -> None:
        """End the session on the server and return to the login screen."""
        self.app.spawn(self.app.leave_session(logout=True), "log out")

    def set_presence(self, status: str) -> None:
        """Online, idle, do not disturb, or invisible."""
        session, presence = self.app.session, _PRESENCES.get(status)
        if session is not None and presence is not None:
            self.app.spawn(session.set_presence(presence), "change your status")

    def start_mfa(self) -> None:
        """Ask the server for a new TOTP secret and show it as a QR code."""
        session = self.app.session
        if session is None:
            return

        async def start() -> None:
            uri, secret = await session.mfa_setup()
            self.qr = qr_texture(uri)
            self.mfa_secret = secret
            self.mfa_step = "scan"

        self.app.spawn(start(), "start two-factor set-up")

    def enable_mfa(self) -> None:
        """Confirm the set-up with a code from the authenticator app."""
        session, code = self.app.session, self.ids.mfa_code.text.strip()
        if session is None:
            return

        async def enable() -> None:
            codes = await session.mfa_enable(code)
            self.ids.mfa_code.text = ""
            self.backup_codes = "   ".join(codes)
            self.mfa_step, self.qr, self.mfa_enabled = "done", None, True
            self.app.toast("Two-factor authentication is on. Keep your backup codes safe.")

        self.app.spawn(enable(), "turn on two-factor authentication")

    def disable_mfa(self) -> None:
        """Turn two-factor authentication off (needs a current code)."""
        session, code = self.app.session, self.ids.mfa_code.text.strip()
        if session is None:
            return

        async def disable() -> None:
            await session.mfa_disable(code)
            self.ids.mfa_code.text = ""
            self.mfa_enabled, self.mfa_step, self.backup_codes = False, "", ""
            self.app.toast("Two-factor authentication is off.")

        self.app.spawn(disable(), "turn off two-factor authentication")

    # -- audio --------------------------------------------------------------------------------

    def _load_devices(self) -> None:
        try:
            from voicechat.sdk.audio import list_devices

            devices = list_devices()
        except Exception as exc:
            from voicechat.sdk.app import readable_error

            self.devices_note = f"Sound devices unavailable: {readable_error(exc)}"
            return
        self.devices_note = ""
        self.input_devices = [SYSTEM_DEFAULT, *(d.name for d in devices.inputs)]
        self.output_devices = [SYSTEM_DEFAULT, *(d.name for d in devices.outputs)]

    def change_audio(self, field: str, value: Any) -> None:
        """Store one audio setting and apply it to the voice engine."""
        if self._loading:
            return
        if field in ("input_device", "output_device") and value == SYSTEM_DEFAULT:
            value = None
        settings = self.app.settings
        setattr(settings.audio, field, value)
        settings.save()
        session = self.app.session
        if session is not None:
            self.app.spawn(session.apply_audio(settings.audio), "apply the audio settings")

    def capture_key(self) -> None:
        """The next key pressed becomes the push-to-talk key."""
        self.capturing_key = True

    def _on_key_down(self, _window: Any, key: int, *_args: Any) -> Any:
        name = str(Window._system_keyboard.keycode_to_string(key))
        if not self.capturing_key:
            showing = self.manager is not None and self.manager.current == self.name
            if showing and name == "escape":
                self.back()
                return True
            return False
        self.capturing_key = False
        if name and name != "escape":
            settings = self.app.settings
            settings.ptt_key = name
            settings.save()
            self.ids.ptt_key.text = name.upper()
        return True

    def _set_volume(self, user_id: str, percent: float, label: Label) -> None:
        volume = round(percent / 100, 2)
        label.text = f"{percent:.0f}%"
        session = self.app.session
        if session is not None:
            session.set_user_volume(user_id, volume)  # kept in the settings by the session
