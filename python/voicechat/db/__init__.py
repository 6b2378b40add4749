"""PostgreSQL: the connection pool, versioned migrations and the repositories."""

from voicechat.db.migrate import Migration, apply_migrations, load_migrations, schema_version
from voicechat.db.pool import create_pool, ping

__all__ = [
    "Migration",
    "apply_migrations",
    "create_pool",
    "load_migrations",
    "ping",
    "schema_version",
]
