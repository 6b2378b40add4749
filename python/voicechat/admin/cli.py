"""The `voicechat admin` command group; each subcommand lives in its own module here."""

from __future__ import annotations

import click

from voicechat.admin.audit import audit
from voicechat.admin.invites import invites
from voicechat.admin.master_key import rotate_master_key
from voicechat.admin.users import users


@click.group()
def admin() -> None:
    """Operate the server from a shell: users, invites, audit ... (docs/accounts.md).

    Works on the server's database directly with its settings (VOICECHAT_*, .env, TOML);
    with the embedded PostgreSQL, a running `voicechat serve`'s or one started for the command.
    Every listing prints a table, or JSON with --json.
    """


admin.add_command(rotate_master_key)
admin.add_command(users)
admin.add_command(invites)
admin.add_command(audit)
