"""The desktop client against a live server, driven through its window like a person would:
log in on the Login screen, chat (history paging, send, edit, reply, delete, files), see
another user's message and typing, change settings and turn on two-factor authentication,
join a voice channel and see who speaks, sign in again with a backup code and through SSO,
and see the banner when the server goes away.

One scenario in one window (Kivy cannot reopen its window in a process). Screenshots of each
screen go to the artifacts folder (see `conftest.artifacts`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
import wave
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import pyotp
import pytest

from tests.conftest import LiveServer
from voicechat.sdk import Client

# One long scenario (a window cannot be reopened): more time than the per-test default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _play_wav_bot() -> ModuleType:
    spec = importlib.util.spec_from_file_location("play_wav_bot", EXAMPLES / "play_wav_bot.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tone(path: Path, seconds: float = 3.0, rate: int = 48000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.4 * 32767 * np.sin(2 * np.pi * 440.0 * t)).astype(np.int16)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())
    return path


async def test_desktop_client(
    sso_server: LiveServer,
    sso_server_env: dict[str, str],
    live_server_factory: Callable[..., LiveServer],
    oidc_issuer: str,
    x_display: str,
    artifacts: Path,
    tmp_path: Path,
) -> None:
    live_server, url = sso_server, sso_server.base_url
    async with httpx.AsyncClient(timeout=5) as http:
        # Erin exists only at the SSO provider; her first sign-in creates her account.
        registered = await http.put(
            f"{oidc_issuer}/users/sso-0001",
            json={"preferred_username": "erin", "email": "erin@example.org"},
        )
    assert registered.status_code == 204, registered.text
    async with Client(url) as admin:
        await admin.register("admin", "admin password")
        community = await admin.create_channel("Community", type="category")
        await admin.create_channel("general", category_id=str(community.id), topic="Anything goes")
        await admin.create_channel("Lounge", type="voice", category_id=str(community.id))
        await admin.create_channel("random", category_id=str(community.id))
        general = await admin.channel_by_name("general")
        # More than one page (50) of history, so the client has to load older messages.
        for n in range(55):
            await admin.send(general.id, f"history {n}")
        await admin.send(general.id, "welcome to the server")
    async with Client(url) as alice:
        await alice.register("alice", "alice password")

    from kivy_client.main import configure_kivy

    configure_kivy()
    from kivy.core.window import Window

    from kivy_client.app import VoicechatApp
    from tests.gui import driver
    from voicechat.sdk.app import ClientSettings

    home = tmp_path / "client-home"
    home.mkdir()
    (home / "settings.json").write_text("{not json")  # the client starts anyway, and says so
    settings = ClientSettings.load(home)
    # No sound card here: the voice engine runs device-less, on the real native peer.
    settings.audio.input_device = "none"
    settings.audio.output_device = "none"
    settings.download_dir = str(tmp_path / "downloads")
    browser = _Browser()
    app = VoicechatApp(server_url=url, settings=settings, open_browser=browser.open)
    failure: list[BaseException] = []
    seen: list[str] = []  # what the window showed when a step failed

    async def scenario() -> None:
        try:
            await asyncio.wait_for(app.ready.wait(), 30)
            await driver.wait_until(lambda: "could not be read" in app.toast_text, "the toast")
            await _login(app, driver, artifacts)
            bob = await _chat(app, driver, url, artifacts)
            async with bob:
                await _message_actions(app, driver, bob, tmp_path)
                await _settings(app, driver, bob, artifacts)
                await _voice(app, driver, bob, tmp_path, artifacts)
            await _log_out_and_in_with_mfa(app, driver)
            await _log_out_and_in_with_sso(app, driver, browser, oidc_issuer)
            await _connection_lost(app, driver, live_server)
            await _sent_after_reconnect(
                app, driver, lambda: live_server_factory(sso_server_env), url
            )
        except BaseException as exc:
            failure.append(exc)
            seen.append(f"toast {app.toast_text!r}, connection {app.connection_state!r}")
            await driver.screenshot(artifacts / "failure.png", check=False)
        finally:
            app.stop()

    task = asyncio.ensure_future(scenario())
    await app.run_async()
    await task
    if failure:
        raise AssertionError(f"{failure[0]} ({', '.join(seen)}; see failure.png)") from failure[0]
    assert Window is not None
    for name in ("login", "main", "settings", "voice"):
        assert (artifacts / f"{name}.png").stat().st_size > 10_000


async def _login(app: Any, driver: Any, artifacts: Path) -> None:
    login = app.screen("login")
    assert app.manager.current == "login"
    assert login.ids.server.text == app.server_url_hint
    await driver.tap(login.ids.username)
    await driver.type_text("alice")
    await driver.tap(login.ids.password)
    await driver.type_text("wrong password")
    await driver.press("enter")
    error = await driver.wait_until(lambda: login.error, "the login error")
    assert error == "Wrong username or password."
    assert "Wrong username or password." in driver.label_texts(login)
    await driver.screenshot(artifacts / "login.png")

    login.ids.password.text = ""
    await driver.tap(login.ids.password)
    await driver.type_text("alice password")
    await driver.tap(login.ids.login_button)
    await driver.wait_until(lambda: app.manager.current == "main", "the main screen")


async def _chat(app: Any, driver: Any, url: str, artifacts: Path) -> Client:
    from kivy_client.widgets.messages import MessageRow
    from kivy_client.widgets.panels import ChannelRow, MemberRow

    main = app.screen("main")
    await driver.wait_until(lambda: main.channel_title == "#general", "#general to open")

    def rows() -> list[str]:
        return [row.markup for row in driver.find(main.ids.messages, MessageRow)]

    await driver.wait_until(
        lambda: any("welcome to the server" in m for m in rows()), "the history"
    )
    # Scrolled to the top, the view fetches the page before the oldest loaded message.
    view = main.ids.messages
    assert not any("history 0\n" in row.get("markup", "") + "\n" for row in view.data)

    await driver.wheel(
        view,
        "up",
        until=lambda: view.data[0].get("text") == "This is the beginning of #general.",
        what="the start of the channel",
    )
    assert any(row.get("markup", "").endswith("history 0") for row in view.data)
    await driver.wheel(view, "down", until=lambda: view.scroll_y <= 0.001, what="the bottom")
    texts = driver.label_texts(main)
    assert "COMMUNITY" in texts
    assert "general" in texts
    assert "Lounge" in texts

    await driver.tap(main.ids.composer)
    await driver.type_text("hello from the desktop client")
    await driver.press("enter")
    await driver.wait_until(
        lambda: any("hello from the desktop client" in m and "sending" not in m for m in rows()),
        "my message, sent",
    )
    assert main.ids.composer.text == ""

    bob = Client(url)
    await bob.register("bob", "bob password")
    general = await bob.channel_by_name("general")
    await bob.typing(general.id)
    await driver.wait_until(lambda: main.typing_text == "bob is typing…", "bob typing")
    assert "bob is typing…" in driver.label_texts(main)
    await bob.send(general.id, "hi alice, this is bob")
    await driver.wait_until(
        lambda: any("hi alice, this is bob" in m for m in rows()), "bob's message"
    )
    await driver.wait_until(lambda: main.typing_text == "", "bob's typing notice to end")
    await driver.wait_until(
        lambda: "bob" in driver.label_texts(main.ids.member_list), "bob in the member list"
    )
    await driver.screenshot(artifacts / "main.png")

    # A message in another channel: a badge on it until it is opened.
    random = await bob.channel_by_name("random")
    await bob.send(random.id, "over here")

    def random_row() -> Any:
        rows = driver.find(main.ids.channel_list, ChannelRow, label="random")
        return rows[0] if rows else None

    await driver.wait_until(lambda: random_row() and random_row().unread == 1, "the badge")
    assert "1" in driver.label_texts(random_row())
    await driver.tap(random_row())
    await driver.wait_until(lambda: main.channel_title == "#random", "#random")
    await driver.wait_until(lambda: _row(driver, main, "over here"), "bob's message there")
    assert random_row().unread == 0
    (general_row,) = driver.find(main.ids.channel_list, ChannelRow, label="general")
    await driver.tap(general_row)
    await driver.wait_until(lambda: main.channel_title == "#general", "back in #general")

    # Up in the empty composer edits my last message; Escape lets go of it.
    await driver.tap(main.ids.composer)
    await driver.press("up")
    assert main.ids.composer.text == "hello from the desktop client"
    assert main.composer_note.startswith("Editing message")
    await driver.press("escape")
    assert main.ids.composer.text == ""
    assert main.composer_note == ""

    # Clicking Bob in the member list opens our direct messages.
    (bob_row,) = driver.find(main.ids.member_list, MemberRow, label="bob")
    await driver.tap(bob_row)
    await driver.wait_until(lambda: main.channel_title == "bob", "the DM with bob")
    await driver.wait_until(
        lambda: "DIRECT MESSAGES" in driver.label_texts(main.ids.channel_list), "the DM section"
    )
    await driver.frames()
    (general_row,) = driver.find(main.ids.channel_list, ChannelRow, label="general")
    await driver.tap(general_row)
    await driver.wait_until(lambda: main.channel_title == "#general", "back in #general")
    return bob


async def _settings(app: Any, driver: Any, bob: Client, artifacts: Path) -> None:
    from kivy.uix.slider import Slider

    main = app.screen("main")
    await driver.tap(main.ids.settings_button)
    await driver.wait_until(lambda: app.manager.current == "settings", "the settings screen")
    settings = app.screen("settings")
    assert "alice" in settings.account_text
    await driver.tap(settings.ids.mfa_setup_button)
    await driver.wait_until(lambda: settings.qr is not None, "the MFA QR code")
    assert settings.mfa_secret
    assert settings.ids.qr_image.texture is settings.qr
    await driver.screenshot(artifacts / "settings.png")

    # Confirm with the authenticator's code: MFA is on, and the backup codes show once.
    await driver.tap(settings.ids.mfa_code)
    await driver.type_text(pyotp.TOTP(settings.mfa_secret).now())
    await driver.tap(settings.ids.mfa_confirm_button)
    await driver.wait_until(lambda: settings.backup_codes, "the backup codes")
    assert settings.mfa_enabled
    assert settings.ids.mfa_confirm_button.text == "Turn off"

    # Audio: each change is saved at once.
    client_settings = app.settings
    assert client_settings.audio.noise_suppression
    await driver.tap(settings.ids.noise_suppression)
    await driver.wait_until(lambda: not client_settings.audio.noise_suppression, "denoise off")
    await driver.tap(settings.ids.mode_ptt)
    await driver.wait_until(lambda: client_settings.audio.mode == "push_to_talk", "PTT mode")
    await driver.tap(settings.ids.ptt_key)
    await driver.wait_until(lambda: settings.ids.ptt_key.text == "Press a key…", "key capture")
    await driver.press("f9")
    await driver.wait_until(lambda: client_settings.ptt_key == "f9", "the new PTT key")
    assert settings.ids.ptt_key.text == "F9"
    await driver.tap(settings.ids.mode_voice)
    await driver.wait_until(lambda: client_settings.audio.mode == "voice_activity", "VAD mode")
    await driver.tap_slider(settings.ids.bitrate, 1.0)
    await driver.wait_until(lambda: client_settings.audio.bitrate == 96000, "96 kbps")
    stored = json.loads(client_settings.path.read_text())
    assert stored["ptt_key"] == "f9"
    assert stored["audio"]["noise_suppression"] is False
    assert stored["audio"]["bitrate"] == 96000
    assert stored["audio"]["mode"] == "voice_activity"

    # Bob plays at 150 % for me.
    settings.ids.scroll.scroll_y = 0  # scrolled down to the list
    await driver.frames()
    (volume,) = [
        slider
        for row in settings.ids.volumes.children
        if "bob" in driver.label_texts(row)
        for slider in driver.find(row, Slider)
    ]
    await driver.tap_slider(volume, 0.75)
    assert client_settings.user_volumes[str(bob.user.id)] == 1.5
    assert "150%" in driver.label_texts(volume.parent)
    await driver.press("escape")
    await driver.wait_until(lambda: app.manager.current == "main", "back to the chat")


async def _voice(app: Any, driver: Any, bob: Client, tmp_path: Path, artifacts: Path) -> None:
    from kivy_client.widgets.panels import ChannelRow, VoiceParticipantRow

    main = app.screen("main")
    (lounge,) = driver.find(main.ids.channel_list, ChannelRow, label="Lounge")
    await driver.tap(lounge)
    await driver.wait_until(lambda: main.in_voice, "the voice bar")
    assert main.voice_title == "Lounge"
    assert main.ids.voice_bar.height > 0
    me = app.session.me

    def speaking(user_id: str) -> bool:
        rows = driver.find(main.ids.channel_list, VoiceParticipantRow, user_id=user_id)
        return bool(rows) and rows[0].speaking

    await driver.wait_until(
        lambda: driver.find(main.ids.channel_list, VoiceParticipantRow, user_id=str(me.id)),
        "me under Lounge",
    )
    player = _play_wav_bot()
    playing = asyncio.ensure_future(player.play(bob, "Lounge", _tone(tmp_path / "tone.wav")))
    try:
        assert bob.user is not None
        bob_id = str(bob.user.id)
        await driver.wait_until(
            lambda: driver.find(main.ids.channel_list, VoiceParticipantRow, user_id=bob_id),
            "bob under Lounge",
        )
        rows_before = list(main.ids.channel_list.children)
        await driver.wait_until(lambda: speaking(bob_id), "bob speaking", 30)
        # Speaking lights up bob's row where it is: the sidebar is not built anew.
        assert main.ids.channel_list.children == rows_before
        await driver.screenshot(artifacts / "voice.png")
    finally:
        await playing

    await driver.tap(main.ids.mute_button)
    await driver.wait_until(lambda: main.self_muted, "muted")
    assert main.ids.mute_button.text == "Unmute"
    await driver.press("m", ["ctrl"])
    await driver.wait_until(lambda: not main.self_muted, "unmuted by Ctrl+M")
    await driver.tap(main.ids.deafen_button)
    await driver.wait_until(lambda: main.self_deafened and main.self_muted, "deafened")
    assert main.ids.deafen_button.text == "Undeafen"
    await driver.tap(main.ids.deafen_button)
    await driver.wait_until(lambda: not main.self_deafened and not main.self_muted, "undeafened")
    await driver.tap(main.ids.leave_button)
    await driver.wait_until(lambda: not main.in_voice, "left the voice channel")


def _row(driver: Any, main: Any, text: str) -> Any:
    from kivy_client.widgets.messages import MessageRow

    for row in driver.find(main.ids.messages, MessageRow):
        if text in row.markup:
            return row
    return None


async def _menu(driver: Any, main: Any, text: str, action: str) -> None:
    from kivy_client.widgets.common import FlatButton

    view = main.ids.messages
    await driver.wait_until(lambda: _row(driver, main, text), f"the row {text!r}")

    def menu_button_in_view() -> bool:
        button = _row(driver, main, text).ids.menu_button
        _, bottom = view.to_window(view.x, view.y)
        _, y = button.to_window(*button.center)
        return bottom < y < bottom + view.height

    # A tall message's menu button is at its top: scroll up to it first.
    await driver.wheel(view, "up", until=menu_button_in_view, what="the menu button", notches=1)

    # Click once the list has come to rest: a scroll still settling (or a row the RecycleView
    # is laying out again) moves the button between finding it and clicking it.
    previous = None
    for _ in range(100):
        await driver.frames(1)
        button = _row(driver, main, text).ids.menu_button
        here = button.to_window(*button.center)
        if here == previous and menu_button_in_view():
            break
        previous = here
    await driver.tap(_row(driver, main, text).ids.menu_button)
    (button,) = await driver.wait_until(
        lambda: driver.find(None, FlatButton, text=action), f"the {action} menu item"
    )
    await driver.tap(button)


async def _message_actions(app: Any, driver: Any, bob: Client, tmp_path: Path) -> None:
    from kivy.uix.filechooser import FileChooserListView

    from kivy_client.widgets.common import FlatButton

    main = app.screen("main")
    general = await bob.channel_by_name("general")

    # Edit my message from its menu: the composer takes its text; Enter saves.
    await _menu(driver, main, "hello from the desktop client", "Edit")
    assert main.ids.composer.text == "hello from the desktop client"
    assert "Editing message" in main.composer_note
    await driver.type_text(", edited")
    await driver.press("enter")
    row = await driver.wait_until(
        lambda: _row(driver, main, "hello from the desktop client, edited"), "the edit"
    )
    await driver.wait_until(lambda: "(edited)" in row.markup, "the edited marker")

    # Reply to Bob: the reply shows what it answers.
    await _menu(driver, main, "hi alice, this is bob", "Reply")
    assert main.composer_note.startswith("Replying to bob")
    await driver.type_text("hey bob")
    await driver.press("enter")
    reply = await driver.wait_until(lambda: _row(driver, main, "hey bob"), "my reply")
    await driver.wait_until(lambda: "bob: hi alice, this is bob" in reply.markup, "the quote")

    # Delete it again, after confirming.
    await _menu(driver, main, "hey bob", "Delete")
    (confirm,) = await driver.wait_until(
        lambda: [b for b in driver.find(None, FlatButton, text="Delete") if b.bg[0] > 0.8],
        "the confirmation",
    )
    await driver.tap(confirm)
    await driver.wait_until(lambda: _row(driver, main, "hey bob") is None, "the deletion")

    # A message the server refuses (too long; pasted) says why, and can be discarded.
    await driver.tap(main.ids.composer)
    main.ids.composer.text = "x" * 4001
    await driver.press("enter")
    refused = await driver.wait_until(lambda: _row(driver, main, "Not sent:"), "the refusal")
    assert "at most 4000 characters." in refused.markup
    await driver.wait_until(lambda: "at most 4000 characters." in app.toast_text, "the toast")
    await _menu(driver, main, "Not sent:", "Discard")
    await driver.wait_until(lambda: _row(driver, main, "Not sent:") is None, "the discard")
    view = main.ids.messages
    await driver.wheel(view, "down", until=lambda: view.scroll_y <= 0.001, what="the bottom")

    # A file from Bob: its Download button saves it to the download folder.
    uploaded = await bob.upload(
        b"quarterly numbers\n", filename="report.txt", channel_id=general.id
    )
    await bob.send(general.id, "the report", attachments=[uploaded["id"]])
    row = await driver.wait_until(lambda: _row(driver, main, "the report"), "bob's file")
    (download,) = await driver.wait_until(
        lambda: driver.find(row, FlatButton, text="Download report.txt (18 B)"), "the button"
    )
    await driver.tap(download)
    saved = tmp_path / "downloads" / "report.txt"
    await driver.wait_until(saved.exists, "the downloaded file")
    assert saved.read_bytes() == b"quarterly numbers\n"
    await driver.wait_until(lambda: app.toast_text.startswith("Saved report.txt"), "the toast")

    # Attach a file of my own through the file picker.
    notes = tmp_path / "picked" / "notes.txt"
    notes.parent.mkdir()
    notes.write_text("see attached")
    await driver.tap(main.ids.attach_button)
    (chooser,) = await driver.wait_until(
        lambda: driver.find(None, FileChooserListView), "the file picker"
    )
    chooser.path = str(notes.parent)
    chooser.selection = [str(notes)]
    (attach,) = driver.find(None, FlatButton, text="Attach")
    await driver.tap(attach)
    assert main.composer_note == "Attached: notes.txt"
    await driver.tap(main.ids.composer)
    await driver.type_text("my notes")
    await driver.press("enter")
    await driver.wait_until(
        lambda: (r := _row(driver, main, "my notes")) is not None and r.attachments,
        "my attachment",
    )


async def _log_out_and_in_with_mfa(app: Any, driver: Any) -> None:
    main, login = app.screen("main"), app.screen("login")
    backup_code = app.screen("settings").backup_codes.split()[0]
    await driver.tap(main.ids.settings_button)
    await driver.wait_until(lambda: app.manager.current == "settings", "the settings screen")
    await driver.tap(app.screen("settings").ids.logout_button)
    await driver.wait_until(lambda: app.manager.current == "login", "the login screen")
    assert login.ids.username.text == "alice"

    await driver.tap(login.ids.password)
    await driver.type_text("alice password")
    await driver.press("enter")
    await driver.wait_until(lambda: login.mfa, "the code prompt")
    assert "AUTHENTICATION CODE" in driver.label_texts(login)
    await driver.tap(login.ids.code)
    await driver.type_text(backup_code)
    await driver.tap(login.ids.verify_button)
    await driver.wait_until(lambda: app.manager.current == "main", "the main screen again")
    await driver.wait_until(lambda: main.channel_title == "#general", "#general again")
    await driver.wait_until(lambda: main.banner == "", "the connection to come up")


class _Browser:
    """The system browser: the person submits the provider's sign-in form, and the
    redirects (to the server, then to the client's loopback listener) are followed."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.pages: list[httpx.Response] = []

    def open(self, url: str) -> bool:
        self.opened.append(url)

        def sign_in() -> None:
            page = httpx.post(url, data={"sub": "sso-0001"}, follow_redirects=True, timeout=10)
            self.pages.append(page)

        threading.Thread(target=sign_in, daemon=True).start()
        return True


async def _log_out_and_in_with_sso(app: Any, driver: Any, browser: _Browser, issuer: str) -> None:
    from kivy_client.widgets.common import FlatButton

    main, login = app.screen("main"), app.screen("login")
    await driver.tap(main.ids.settings_button)
    await driver.wait_until(lambda: app.manager.current == "settings", "the settings screen")
    await driver.tap(app.screen("settings").ids.logout_button)
    await driver.wait_until(lambda: app.manager.current == "login", "the login screen")
    (sso,) = await driver.wait_until(
        lambda: driver.find(login.ids.sso_buttons, FlatButton, text="Continue with Corp SSO"),
        "the SSO button",
    )
    await driver.tap(sso)
    await driver.wait_until(lambda: app.manager.current == "main", "the main screen as erin")
    assert browser.opened[0].startswith(issuer)
    assert app.session.me.username == "erin"
    await driver.wait_until(lambda: main.me_name == "erin", "erin in the user panel")
    await driver.wait_until(
        lambda: any("my notes" in row.get("markup", "") for row in main.ids.messages.data),
        "the history, for erin",
    )
    await driver.wait_until(lambda: browser.pages, "the browser's last page")
    assert "You can close this tab" in browser.pages[0].text
    await driver.wait_until(lambda: main.banner == "", "the connection to come up")


async def _connection_lost(app: Any, driver: Any, server: LiveServer) -> None:
    main = app.screen("main")
    server.stop()
    await driver.wait_until(lambda: main.banner.startswith("Connection lost"), "the banner")
    assert main.ids.banner.height > 0


async def _sent_after_reconnect(
    app: Any, driver: Any, restart: Callable[[], LiveServer], url: str
) -> None:
    """Written while the server is down: shown as sending, delivered once when it is back."""
    main = app.screen("main")
    await driver.tap(main.ids.composer)
    await driver.type_text("written while offline")
    await driver.press("enter")
    row = await driver.wait_until(lambda: _row(driver, main, "written while offline"), "it")
    assert "(sending…)" in row.markup
    await asyncio.to_thread(restart)
    await driver.wait_until(lambda: main.banner == "", "the reconnection", 60)
    await driver.wait_until(
        lambda: (r := _row(driver, main, "written while offline")) and "sending" not in r.markup,
        "the delivery",
        30,
    )
    async with Client(url) as admin:
        await admin.login("admin", "admin password")
        general = await admin.channel_by_name("general")
        page = await admin.messages(general.id, limit=5)
    assert [m.content for m in page.messages].count("written while offline") == 1
