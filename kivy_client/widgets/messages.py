"""The message view: a RecycleView of rows whose heights are measured before layout, so a
long history scrolls without building a widget per message."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from kivy.clock import Clock
from kivy.core.text.markup import MarkupLabel
from kivy.metrics import dp, sp
from kivy.properties import BooleanProperty, ListProperty, NumericProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.dropdown import DropDown
from kivy.uix.recycleview import RecycleView
from kivy.uix.recycleview.views import RecycleDataViewBehavior
from kivy.utils import escape_markup

from kivy_client import theme
from kivy_client.running import running_app
from kivy_client.widgets.common import FlatButton
from voicechat.sdk.app import Timeline
from voicechat.sdk.app.view_rows import user_label
from voicechat.sdk.models import Attachment, Message

if TYPE_CHECKING:
    from kivy_client.screens.main import MainScreen

BODY_FONT = "15sp"
ROW_PADDING = 10  # dp, above and below a row's text
ATTACHMENT_ROW = 34  # dp per attachment button
SIDE_SPACE = 96  # dp left of and right of the text (avatar gutter, menu button)


def format_time(moment: datetime) -> str:
    """`14:03` today, `2026-11-25 14:03` before."""
    local = moment.astimezone()
    if local.date() == datetime.now().astimezone().date():
        return local.strftime("%H:%M")
    return local.strftime("%Y-%m-%d %H:%M")


def human_size(size: int) -> str:
    """`12.3 KB` style sizes for attachments."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def message_markup(
    message: Message, reply_to: Message | None, *, pending: bool = False, error: str | None = None
) -> str:
    """A message as Kivy markup: a reply line, the author, the time, the text, markers."""
    author = message.author
    name = escape_markup(author.name)
    lines = []
    if message.reply_to is not None:
        if reply_to is not None:
            quoted = escape_markup((reply_to.content or "")[:80].replace("\n", " "))
            lines.append(
                f"[size=13sp][color=949ba4]↪ {escape_markup(reply_to.author.name)}: "
                f"{quoted}[/color][/size]"
            )
        else:
            lines.append("[size=13sp][color=949ba4]↪ a message not loaded[/color][/size]")
    header = (
        f"[b][color={theme.name_colour(author.name)}]{name}[/color][/b]  "
        f"[size=12sp][color=949ba4]{format_time(message.created_at)}[/color][/size]"
    )
    lines.append(header)
    if message.content is not None:
        body = escape_markup(message.content)
    elif message.decryption_error:
        body = "[i][color=949ba4]This message could not be decrypted.[/color][/i]"
    else:
        body = ""
    if message.edited_at is not None:
        body += "  [size=11sp][color=949ba4](edited)[/color][/size]"
    if error:
        body += f"\n[size=13sp][color=da373c]Not sent: {escape_markup(error)}[/color][/size]"
    elif pending:
        body = f"[color=949ba4]{body}  [size=11sp](sending…)[/size][/color]"
    if body:
        lines.append(body)
    return "\n".join(lines)


class HeightCache:
    """Measured text heights by (message id, version, width), so redraws do not re-measure."""

    def __init__(self) -> None:
        self._heights: dict[tuple[Any, ...], float] = {}

    def height(self, key: tuple[Any, ...], markup: str, width: float) -> float:
        """The height of `markup` wrapped at `width`."""
        full_key = (*key, round(width))
        cached = self._heights.get(full_key)
        if cached is None:
            label = MarkupLabel(text=markup, font_size=sp(15), text_size=(max(width, 50), None))
            label.refresh()
            cached = float(label.content_height)
            self._heights[full_key] = cached
        return cached


def message_rows(
    timeline: Timeline,
    my_id: UUID | None,
    heights: HeightCache,
    width: float,
    *,
    title: str,
    loading_older: bool,
) -> list[dict[str, Any]]:
    """The `data` of a :class:`MessageView`: a first row (the channel's start, or a note that
    more is loading), then one row per timeline entry, with its measured height."""
    rows: list[dict[str, Any]] = []
    if timeline.has_more:
        note = "Loading older messages…" if loading_older else "Scroll up for more"
        rows.append({"viewclass": "ChannelStart", "text": note, "height": dp(40)})
    else:
        start = f"This is the beginning of {title}."
        rows.append({"viewclass": "ChannelStart", "text": start, "height": dp(56)})
    for entry in timeline.entries:
        message, pending = entry.message, entry.pending
        reply = timeline.get(message.reply_to) if message.reply_to is not None else None
        markup = message_markup(message, reply, pending=pending, error=entry.error)
        key = (str(message.id), message.edited_at, pending, entry.error, reply is not None)
        text_height = heights.height(key, markup, width)
        attachments = list(message.attachments or [])
        rows.append(
            {
                "viewclass": "MessageRow",
                "message_id": str(message.id),
                "markup": markup,
                "own": my_id is not None and message.author.id == my_id and not entry.error,
                "pending": pending,
                "failed": entry.error is not None,
                "initial": user_label(message.author)[:1].upper(),
                "attachments": attachments,
                "text_height": text_height,
                "height": text_height + dp(ROW_PADDING * 2 + ATTACHMENT_ROW * len(attachments)),
            }
        )
    return rows


class MessageRow(RecycleDataViewBehavior, BoxLayout):  # type: ignore[misc]
    """One message: text (markup), its attachments, and a menu button."""

    message_id = StringProperty("")
    markup = StringProperty("")
    own = BooleanProperty(False)
    pending = BooleanProperty(False)
    failed = BooleanProperty(False)  # refused by the server: Retry or Discard
    initial = StringProperty("")  # drawn in the avatar circle
    attachments = ListProperty([])
    text_height = NumericProperty(0)

    def refresh_view_attrs(self, rv: Any, index: int, data: dict[str, Any]) -> Any:
        result = super().refresh_view_attrs(rv, index, data)
        box = self.ids.attachment_box
        box.clear_widgets()
        for attachment in self.attachments:
            button = FlatButton(
                text=f"Download {attachment.filename} ({human_size(attachment.size_bytes)})",
                bg=theme.SIDEBAR_DARK,
                size_hint=(None, None),
                height=dp(ATTACHMENT_ROW - 4),
                halign="left",
            )
            button.bind(texture_size=lambda b, size: setattr(b, "width", size[0] + dp(24)))
            button.bind(on_release=lambda _b, a=attachment: _message_view(self).download(a))
            box.add_widget(button)
        return result

    def open_menu(self, anchor: Any) -> None:
        """Reply, and Edit/Delete on one's own messages (Retry/Discard on refused ones)."""
        view = _message_view(self)
        menu = DropDown(auto_width=False, width=dp(140))
        screen = _main_screen(self)
        if screen is None:
            return
        actions: list[tuple[str, Any]]
        if self.failed:
            actions = [("Retry", screen.retry), ("Discard", screen.discard)]
        else:
            actions = [("Reply", view.reply)]
        if self.own and not self.pending:
            actions += [("Edit", view.edit), ("Delete", view.delete)]
        for label, action in actions:
            button = FlatButton(
                text=label,
                size_hint_y=None,
                height=dp(34),
                bg=theme.DANGER if label == "Delete" else theme.SIDEBAR_DARK,
            )
            button.bind(
                on_release=lambda _b, act=action, mid=self.message_id: (menu.dismiss(), act(mid))
            )
            menu.add_widget(button)
        view.menu = menu
        menu.open(anchor)


class ChannelStart(RecycleDataViewBehavior, BoxLayout):  # type: ignore[misc]
    """The first row of a channel whose whole history is loaded (or a loading note)."""

    text = StringProperty("")


class MessageView(RecycleView):  # type: ignore[misc]
    """The scrolling history of one channel. The screen sets `data`; this widget keeps the
    view pinned to the newest message, and asks for older pages when scrolled to the top."""

    loading_older = BooleanProperty(False)
    # Kivy properties of RecycleView/ScrollView, declared for the type checker.
    scroll_y: float
    data: list[dict[str, Any]]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.menu: DropDown | None = None
        self._pinned = True
        self._scrolled_by_user = False
        # While the layout catches up with new rows, scroll_y moves by itself (ScrollView keeps
        # its pixel offset): `_settling` holds `_target` until the content has its new height.
        self._settling = 0
        self._target = 0.0
        self._settle_trigger = Clock.create_trigger(self._settle, 0)
        Clock.schedule_once(self._follow_layout, 0)

    def _follow_layout(self, _dt: float) -> None:
        self.layout_manager.bind(height=lambda *_: self._settle_trigger())

    @property
    def settling(self) -> bool:
        """Whether the view is still moving to where the last `set_rows` put it."""
        return self._settling > 0

    def on_scroll_start(self, touch: Any, check_children: bool = True) -> Any:
        # A drag, the wheel or the scroll bar: from now on scroll_y moves because the person
        # scrolls (until new rows arrive), so it says where they want to be.
        handled = super().on_scroll_start(touch, check_children)
        if handled and self.collide_point(*touch.pos):
            self._scrolled_by_user = True
        return handled

    def on_scroll_y(self, _instance: Any, value: float) -> None:
        if not self._scrolled_by_user or self._content_height() <= self.height:
            return  # the layout or we moved it, or there is nothing to scroll
        self._pinned = value <= 0.001
        if value >= 0.999:
            screen = _main_screen(self)
            if screen is not None:
                screen.load_older()

    def _content_height(self) -> float:
        return float(sum(item.get("height", 0) for item in self.data))

    def set_rows(self, rows: list[dict[str, Any]]) -> None:
        """Replace the rows. A view at the newest message stays there; otherwise the same
        messages stay in view, whether rows were added above (older history) or below."""
        before, old_scroll = self._content_height(), float(self.scroll_y)
        added_above = _grew_at_top(self.data, rows)
        self._scrolled_by_user = False
        self.data = rows
        after = self._content_height()
        scrollable = after - self.height
        offset = old_scroll * max(before - self.height, 0)  # distance from the bottom
        if scrollable <= 0:
            target = 1.0
        elif self._pinned and not added_above:
            target = 0.0
        elif added_above:
            target = offset / scrollable
        else:
            target = (offset + after - before) / scrollable
        self._target = min(1.0, max(0.0, target))
        if self._target <= 0.001 < scrollable:
            self._pinned = True  # landed on the newest message: follow the next ones
        self.refresh_from_data()
        self._settling = 10  # frames at most, should the heights never agree
        self._stop_motion()
        self.scroll_y = self._target
        self._settle_trigger()

    def _stop_motion(self) -> None:
        # A fling or wheel turn still animating would carry the view away from the target.
        if self.effect_y is not None:
            self.effect_y.cancel()

    def _settle(self, _dt: float) -> None:
        if not self._settling:
            return
        self._stop_motion()
        self.scroll_y = self._target
        laid_out = abs(self.layout_manager.height - self._content_height()) < 1
        self._settling = 0 if laid_out else self._settling - 1
        if self._settling:
            self._settle_trigger()

    def pin_to_newest(self) -> None:
        """Follow the newest message again (after sending, or opening a channel)."""
        self._pinned = True

    def reply(self, message_id: str) -> None:
        """Reply to a message (the composer shows what it replies to)."""
        screen = _main_screen(self)
        if screen is not None:
            screen.start_reply(message_id)

    def edit(self, message_id: str) -> None:
        """Edit one's own message in the composer."""
        screen = _main_screen(self)
        if screen is not None:
            screen.start_edit(message_id)

    def delete(self, message_id: str) -> None:
        """Delete one's own message (after a confirmation)."""
        screen = _main_screen(self)
        if screen is not None:
            screen.confirm_delete(message_id)

    def download(self, attachment: Attachment) -> None:
        """Save an attachment to the downloads folder."""
        screen = _main_screen(self)
        if screen is not None:
            screen.download(attachment)


def _grew_at_top(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> bool:
    """Whether `new` is `old` with messages added before its first message."""
    old_ids = [r["message_id"] for r in old if "message_id" in r]
    new_ids = [r["message_id"] for r in new if "message_id" in r]
    if not old_ids or len(new_ids) <= len(old_ids):
        return False
    return new_ids[-len(old_ids) :] == old_ids


def _message_view(widget: Any) -> MessageView:
    while widget is not None and not isinstance(widget, MessageView):
        widget = widget.parent
    if widget is None:
        raise LookupError("the row is not in a message view")
    return widget


def _main_screen(widget: Any) -> MainScreen | None:
    try:
        return running_app().main_screen()
    except LookupError:
        return None
