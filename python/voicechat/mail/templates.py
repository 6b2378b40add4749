"""Plain-text mail templates, shipped as package data in `voicechat/mail/templates/`.

A template's first line is `Subject: ...`, then a blank line, then the body; both take
`$name` placeholders (`string.Template`). A placeholder left without a value is an error,
never a mail with `$token` in it.
"""

from __future__ import annotations

from importlib.resources import files
from string import Template


def render(name: str, **values: object) -> tuple[str, str]:
    """The subject and body of template `name` (`password_reset`, `email_verify`).

    Raises:
        KeyError: a placeholder has no value.
    """
    text = files("voicechat.mail").joinpath("templates", f"{name}.txt").read_text("utf-8")
    head, _, body = text.partition("\n\n")
    if not head.startswith("Subject: "):
        raise ValueError(f"mail template {name} does not start with a Subject: line")
    strings = {key: str(value) for key, value in values.items()}
    subject = Template(head.removeprefix("Subject: ").strip()).substitute(strings)
    return subject, Template(body).substitute(strings)
