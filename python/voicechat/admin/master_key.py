"""`voicechat admin rotate-master-key`: move everything the master key seals to a new key.

Production (docs/backup.md "Rotating the master key"): set `VOICECHAT_MASTER_KEY` to the new key
and `VOICECHAT_MASTER_KEY_PREVIOUS` to the old one on every instance, restart them, run this;
once it says nothing is left, remove `VOICECHAT_MASTER_KEY_PREVIOUS` and restart. Development
(keys in `<data dir>/secrets/`): `--new-key` does the first step itself, `--forget-previous` the
last.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import sys
from pathlib import Path
from typing import NoReturn

import click

from voicechat.db.repositories.master_keys import SealedKind
from voicechat.key_rotation import DEFAULT_BATCH_SIZE, KeyStatus, RotationResult
from voicechat.settings import Settings, SettingsError, load_settings

EXIT_CONFIG = 2
_LOG_EVERY = 10_000
_KIND_NAMES = {
    SealedKind.SERVER_SECRETS.value: "server secrets",
    SealedKind.FILE_KEYS.value: "file keys",
    SealedKind.MFA_SECRETS.value: "MFA secrets",
}


def _fail(message: str, status: int = 1) -> NoReturn:
    click.echo(f"voicechat: {message}", err=True)
    sys.exit(status)


def _write_private(path: Path, data: bytes) -> None:
    """Write a key file atomically (0600): a crash leaves the old file or the new, never half."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def _install_new_key(settings: Settings, new_key_file: Path | None) -> None:
    """Development: the current key becomes `master.key.previous`, a new one `master.key`."""
    from voicechat.server_keys import (
        MASTER_KEY_FILE,
        PREVIOUS_MASTER_KEY_FILE,
        decode_master_key,
    )

    if settings.master_key is not None:
        _fail(
            "--new-key and --new-key-file are for development's key files; with "
            "VOICECHAT_MASTER_KEY set, set it to the new key and VOICECHAT_MASTER_KEY_PREVIOUS "
            "to the old one on every instance, restart them, then run this again without it",
            EXIT_CONFIG,
        )
    secrets_dir = settings.data_dir / "secrets"
    current_file = secrets_dir / MASTER_KEY_FILE
    previous_file = secrets_dir / PREVIOUS_MASTER_KEY_FILE
    if previous_file.exists():
        _fail(
            f"a rotation is under way ({previous_file} exists): run without --new-key to "
            "finish it, then --forget-previous",
            EXIT_CONFIG,
        )
    if not current_file.exists():
        _fail(f"no master key in {secrets_dir} yet: nothing to rotate", EXIT_CONFIG)
    current = current_file.read_bytes()
    if new_key_file is not None:
        try:
            new = decode_master_key(new_key_file.read_bytes())
        except (OSError, ValueError) as exc:
            _fail(f"--new-key-file: {exc}", EXIT_CONFIG)
        if new == decode_master_key(current):
            _fail("--new-key-file holds the current master key", EXIT_CONFIG)
    else:
        new = secrets.token_bytes(32)
    # The old key is kept before the new one replaces it: at no moment is it only in memory.
    _write_private(previous_file, current)
    _write_private(current_file, base64.b64encode(new) + b"\n")


def _forget_previous(settings: Settings, status: KeyStatus) -> None:
    from voicechat.server_keys import PREVIOUS_MASTER_KEY_FILE

    if status.left:
        _fail(
            f"{status.left} values are not under the current master key yet: run "
            "`voicechat admin rotate-master-key` to finish first"
        )
    if settings.master_key is not None:
        click.echo(
            "nothing is left under another key: remove VOICECHAT_MASTER_KEY_PREVIOUS from the "
            "configuration of every instance and restart them"
        )
        return
    previous_file = settings.data_dir / "secrets" / PREVIOUS_MASTER_KEY_FILE
    if previous_file.exists():
        previous_file.unlink()
        click.echo(f"removed {previous_file}: the old master key is gone from this server")
    else:
        click.echo("no previous master key is kept here")


def _print_status(status: KeyStatus) -> None:
    click.echo(f"current master key {status.current_key_id}", err=False)
    if status.previous_key_id is not None:
        click.echo(f"previous master key {status.previous_key_id}")
    for kind, per_key in status.counts.items():
        shown = ", ".join(f"{n} {label}" for label, n in sorted(per_key.items())) or "none"
        click.echo(f"  {_KIND_NAMES[kind]:<15} {shown}")
    if status.left == 0:
        click.echo("complete: everything is sealed under the current master key")
    else:
        click.echo(f"not complete: {status.left} values are under another master key")
    if status.unopenable:
        click.echo(
            f"{status.unopenable} values are sealed under a master key that is not configured "
            "(unknown:<id>): they cannot be read until VOICECHAT_MASTER_KEY_PREVIOUS is that key"
        )


def _print_result(result: RotationResult, settings: Settings) -> None:
    done = ", ".join(f"{n} {_KIND_NAMES[kind]}" for kind, n in result.resealed.items())
    click.echo(
        f"re-sealed under master key {result.current_key_id}: {done} in {result.seconds:.1f} s"
    )
    for kind, rows in result.unopenable.items():
        click.echo(
            f"could not open {len(rows)} {_KIND_NAMES[kind]} (first: {rows[0]}): sealed under a "
            "master key that is not configured, or damaged (the log says which)"
        )
    status = result.status
    assert status is not None
    if result.stopped_at_limit and status.left:
        click.echo(f"stopped at --limit: {status.left} values left; run again to go on")
    elif status.left:
        click.echo(f"not complete: {status.left} values are still under another master key")
    else:
        how = (
            "remove VOICECHAT_MASTER_KEY_PREVIOUS and restart every instance"
            if settings.master_key is not None
            else "run again with --forget-previous"
        )
        click.echo(f"complete: nothing is left under another master key; {how}")


async def _run(
    settings: Settings,
    *,
    status_only: bool,
    forget_previous: bool,
    batch_size: int,
    limit: int | None,
    as_json: bool,
) -> int:
    from voicechat.backup.postgres import database
    from voicechat.db.migrate import apply_migrations
    from voicechat.db.pool import dedicated_connection
    from voicechat.key_rotation import key_status, rotate
    from voicechat.server_keys import load_master_keys

    keys = load_master_keys(settings)
    interactive = sys.stderr.isatty() and not as_json

    def progress(kind: SealedKind, done: int, batch: int) -> None:
        if interactive:
            click.echo(f"\r  {_KIND_NAMES[kind.value]:<15} {done} re-sealed", nl=False, err=True)
        elif not as_json and done // _LOG_EVERY != (done - batch) // _LOG_EVERY:
            # Not a terminal (a log): a line every so many, not one per batch.
            click.echo(f"  {_KIND_NAMES[kind.value]:<15} {done} re-sealed", err=True)

    with database(settings) as db:
        async with dedicated_connection(
            db.dsn, connect_timeout=settings.db_connect_timeout
        ) as conn:
            # The columns this needs come with migration 0005: an older schema is brought up.
            await apply_migrations(conn)
            if status_only or forget_previous:
                status = await key_status(conn, keys)
                if forget_previous:
                    _forget_previous(settings, status)
                    return 0
                if as_json:
                    click.echo(json.dumps(status.as_dict()))
                else:
                    _print_status(status)
                return 0 if status.left == 0 else 1
            result = await rotate(conn, keys, batch_size=batch_size, limit=limit, progress=progress)
    if interactive:
        click.echo("", err=True)
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        _print_result(result, settings)
    assert result.status is not None
    if result.unopenable or (result.status.left and not result.stopped_at_limit):
        return 1
    return 0


@click.command("rotate-master-key")
@click.option("--status", "status_only", is_flag=True, help="Only count what is under which key.")
@click.option(
    "--new-key",
    is_flag=True,
    help="Development: make a new master key first (the old one is kept as master.key.previous).",
)
@click.option(
    "--new-key-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Development: like --new-key, with the new key (base64) from this file.",
)
@click.option(
    "--forget-previous",
    is_flag=True,
    help="Once nothing is left under the old key: delete it (development) or say how.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Values re-sealed per transaction.",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    help="Stop after re-sealing this many (a rotation in steps; the next run goes on).",
)
@click.option("--json", "as_json", is_flag=True, help="A machine-readable summary.")
def rotate_master_key(
    status_only: bool,
    new_key: bool,
    new_key_file: Path | None,
    forget_previous: bool,
    batch_size: int,
    limit: int | None,
    as_json: bool,
) -> None:
    """Re-seal every file key, MFA secret and server secret under the current master key.

    Servers keep serving meanwhile: each value opens under the key its id names, as long as
    they have both keys (VOICECHAT_MASTER_KEY new, VOICECHAT_MASTER_KEY_PREVIOUS old). Safe to
    interrupt and to run again: it goes on with what is not moved yet. Exit status 0 when
    nothing is left under another key (or --limit stopped it), 1 otherwise.
    """
    try:
        settings = load_settings()
    except SettingsError as exc:
        _fail(f"invalid configuration: {exc}", EXIT_CONFIG)
    import asyncpg

    from voicechat.backup.archive import BackupRefused

    if new_key or new_key_file is not None:
        _install_new_key(settings, new_key_file)
    try:
        code = asyncio.run(
            _run(
                settings,
                status_only=status_only,
                forget_previous=forget_previous,
                batch_size=batch_size,
                limit=limit,
                as_json=as_json,
            )
        )
    except BackupRefused as exc:
        # The embedded database could not be started or reached.
        _fail(str(exc))
    except (OSError, asyncpg.PostgresError) as exc:
        _fail(f"cannot use the database: {type(exc).__name__}: {exc}")
    sys.exit(code)
