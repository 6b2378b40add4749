"""A slower Kivy loop while nothing happens, and a text cursor that stops blinking.

Kivy's loop wakes `maxfps` times a second to poll input and run the Clock, whether or not
anything changed; on an idle chat window those wake-ups are the whole CPU use. An
:class:`IdleRate` runs the loop at ACTIVE_FPS while something happens and drops it to IDLE_FPS
once IDLE_AFTER seconds passed without any of:

- input or a window event (keys, typed text, mouse moves and clicks, wheel, resize, focus);
- a change from the SDK (:meth:`IdleRate.wake`, called by the app's change bridge);
- a frame drawn (animations, scrolling, toasts, a blinking cursor: anything that redraws).

The first event after an idle spell waits for the next wake-up (at most 1 / IDLE_FPS s);
from then on the loop runs at full rate again, so typing and scrolling stay smooth.

A blinking text cursor redraws the whole window twice a second, so it would keep the loop
awake (and, on a software renderer, cost more than everything else). As in GTK, the cursor
blinks only while the window has focus and for BLINK_TIMEOUT seconds after the last input;
then it stays on (`cursor_blink`, which the kv rule of `Field` follows).
"""

from __future__ import annotations

from typing import Any

from kivy.clock import Clock
from kivy.core.window import Window
from kivy.event import EventDispatcher
from kivy.properties import BooleanProperty

ACTIVE_FPS = 30.0  # the window's frame cap while something happens (kivy_client.main sets it)
IDLE_FPS = 10.0  # wake-ups per second while nothing does (the first input waits <= 0.1 s)
IDLE_AFTER = 2.0  # seconds without activity before the loop slows down
BLINK_TIMEOUT = 10.0  # seconds after the last input the text cursor keeps blinking (GTK's)

# Window events that are input or change what the window shows.
_WINDOW_EVENTS = (
    "on_motion",  # touches, clicks, wheel, mouse hover
    "on_key_down",
    "on_key_up",
    "on_textinput",
    "on_resize",
    "on_restore",
    "on_maximize",
    "on_show",
    "on_drop_file",
)


def set_clock_rate(fps: float) -> None:
    """How many times a second Kivy's loop may wake up (Config `graphics/maxfps`, live).

    Kivy (2.3.1) reads `maxfps` from the Config once, when the Clock is created, into the
    Clock's private `_max_fps`, which every tick reads; there is no public setter. This is
    the one place that touches it.
    """
    Clock._max_fps = float(fps)


class IdleRate(EventDispatcher):  # type: ignore[misc]
    """Switches Kivy's loop between the active and the idle rate (see the module docstring).

    `cursor_blink` is True while text cursors may blink.
    """

    cursor_blink = BooleanProperty(True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.idle = False
        self._last_activity = self._last_input = Clock.get_time()
        # One pending check each (re-armed for the rest of the interval when activity came
        # meanwhile), instead of cancelling and rescheduling on every mouse move.
        self._idle_check = Clock.create_trigger(self._check_idle, IDLE_AFTER)
        self._blink_check = Clock.create_trigger(self._check_blink, BLINK_TIMEOUT)

    def start(self) -> None:
        """Watch the window (call once it exists)."""
        Window.bind(on_flip=self._on_flip, focus=self._on_focus)
        for event in _WINDOW_EVENTS:
            Window.bind(**{event: self._on_input})
        self.wake(input_=True)

    def stop(self) -> None:
        """Stop watching and restore the active rate."""
        self._idle_check.cancel()
        self._blink_check.cancel()
        Window.unbind(on_flip=self._on_flip, focus=self._on_focus)
        for event in _WINDOW_EVENTS:
            Window.unbind(**{event: self._on_input})
        set_clock_rate(ACTIVE_FPS)
        self.idle = False

    def wake(self, *, input_: bool = False) -> None:
        """Something happened: run at the active rate for at least IDLE_AFTER seconds more
        (`input_`: it was the user, so the text cursor may blink again)."""
        now = Clock.get_time()
        self._last_activity = now
        if self.idle:
            self.idle = False
            set_clock_rate(ACTIVE_FPS)
        if not self._idle_check.is_triggered:
            self._idle_check()
        if input_:
            self._last_input = now
            if Window.focus and not self.cursor_blink:
                self.cursor_blink = True
            if not self._blink_check.is_triggered:
                self._blink_check()

    def _on_input(self, *_args: Any) -> None:
        self.wake(input_=True)  # returns None: the event goes on to the widgets

    def _on_flip(self, *_args: Any) -> None:
        self.wake()

    def _on_focus(self, _window: Any, focused: bool) -> None:
        if focused:
            self.wake(input_=True)
        else:
            self.cursor_blink = False
            self.wake()

    def _check_idle(self, _dt: float) -> None:
        quiet = Clock.get_time() - self._last_activity
        if quiet < IDLE_AFTER:
            self._idle_check.timeout = IDLE_AFTER - quiet
            self._idle_check()
            return
        self._idle_check.timeout = IDLE_AFTER
        self.idle = True
        set_clock_rate(IDLE_FPS)

    def _check_blink(self, _dt: float) -> None:
        quiet = Clock.get_time() - self._last_input
        if quiet < BLINK_TIMEOUT:
            self._blink_check.timeout = BLINK_TIMEOUT - quiet
            self._blink_check()
            return
        self._blink_check.timeout = BLINK_TIMEOUT
        self.cursor_blink = False
