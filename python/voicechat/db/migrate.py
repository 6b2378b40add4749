"""Versioned SQL migrations, applied in order, each once, under an advisory lock.

Files are `migrations/NNNN_name.sql`. An applied migration is recorded with its checksum;
editing an applied file is refused rather than silently diverging between servers.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

from voicechat.db.pool import Connection
from voicechat.errors import MigrationError

log = logging.getLogger(__name__)

_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every voicechat process.
_ADVISORY_LOCK_KEY = 0x766F6963  # "voic"

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned schema change."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the SQL text, to detect edits to an applied migration."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The migrations shipped in the package, in version order."""
    found: list[Migration] = []
    for entry in resources.files("voicechat.db").joinpath("migrations").iterdir():
        match = _FILENAME.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {versions}")
    return found


async def apply_migrations(
    conn: Connection, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Bring the schema up to date; safe to call concurrently and repeatedly.

    Returns:
        the migrations this call applied (empty when the schema was current).

    Raises:
        MigrationError: an applied migration's file changed, or the database is newer
            than this code.
    """
    migrations = load_migrations() if migrations is None else migrations
    applied_now: list[Migration] = []
    async with conn.transaction():
        # Several API instances may start at once: one migrates, the others wait and skip.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADVISORY_LOCK_KEY)
        await conn.execute(_CREATE_LEDGER)
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        applied = {row["version"]: row["checksum"] for row in rows}
        known = {m.version for m in migrations}
        if unknown := sorted(set(applied) - known):
            raise MigrationError(
                f"database has migrations {unknown} that this voicechat does not know; "
                "it was migrated by a newer version"
            )
        for migration in migrations:
            checksum = applied.get(migration.version)
            if checksum is not None:
                if checksum != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was edited "
                        "after it was applied"
                    )
                continue
            log.info("applying migration %04d_%s", migration.version, migration.name)
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
            applied_now.append(migration)
    return applied_now


async def schema_version(conn: Connection) -> int | None:
    """The newest applied migration's version; None before the first one."""
    version: int | None = await conn.fetchval("SELECT max(version) FROM schema_migrations")
    return version
