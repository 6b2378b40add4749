"""The `voicechat admin` command group; each subcommand lives in its own module here."""

from __future__ import annotations

import click

from voicechat.admin.master_key import rotate_master_key


@click.group()
def admin() -> None:
    """Operator commands on the database directly, for a shell without a browser."""


admin.add_command(rotate_master_key)
