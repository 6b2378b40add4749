"""The `voicechat admin` command group; each subcommand lives in its own module here."""

from __future__ import annotations

import click


@click.group()
def admin() -> None:
    """Operator commands on the database directly, for a shell without a browser."""
