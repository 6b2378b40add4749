"""The parts of a backup, as named inside its tar stream, and the manifest that lists them."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

HEADER = "header.json"
DATABASE = "database.pgdump"
SETTINGS = "config/settings.json"
MASTER_KEY = "config/secrets/master.key"
#: Only in a backup made while a master-key rotation was configured (its previous key).
PREVIOUS_MASTER_KEY = "config/secrets/master.key.previous"
JWT_KEY = "config/secrets/jwt_ed25519.pem"
MANIFEST = "manifest.json"
FILES_PREFIX = "files/"
#: A file object's name: `files/` and the storage key (`ab/<uuid>`, see FileStorage.object_key).
_FILE_PART = re.compile(r"^files/[0-9a-f]{2}/[0-9a-f-]{36}$")
_FIXED = frozenset({DATABASE, SETTINGS, MASTER_KEY, PREVIOUS_MASTER_KEY, JWT_KEY})


def is_known_part(name: str) -> bool:
    """Whether `name` is a part a backup may hold (anything else is refused, never extracted)."""
    return name in _FIXED or _FILE_PART.match(name) is not None


@dataclass(frozen=True, slots=True)
class BackupHeader:
    """What a backup is, known before its parts are read (the tar stream's first member)."""

    id: str
    created_at: str
    voicechat_version: str
    schema_version: int
    postgres_major: int
    pg_dump_major: int
    database: str  # "embedded" or "external"
    storage: str  # "local" or "s3"

    def to_json(self) -> bytes:
        """The member's bytes."""
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BackupHeader:
        """Parse (raises ValueError, KeyError or TypeError on a malformed one)."""
        return cls(**json.loads(data))


@dataclass(frozen=True, slots=True)
class PartRecord:
    """One part: its size and SHA-256 (hex)."""

    name: str
    size: int
    sha256: str


@dataclass(slots=True)
class Manifest:
    """The tar stream's last member: the header again, and every part with its checksum."""

    header: BackupHeader
    parts: list[PartRecord] = field(default_factory=list)
    #: Objects the database names that the storage no longer had when the backup read it.
    missing_objects: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        """The member's bytes."""
        return json.dumps(
            {
                "header": asdict(self.header),
                "parts": [asdict(part) for part in self.parts],
                "missing_objects": self.missing_objects,
            },
            indent=2,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse (raises ValueError, KeyError or TypeError on a malformed one)."""
        raw: dict[str, Any] = json.loads(data)
        return cls(
            BackupHeader(**raw["header"]),
            [PartRecord(**part) for part in raw["parts"]],
            list(raw.get("missing_objects", [])),
        )

    @property
    def file_parts(self) -> list[PartRecord]:
        """The file objects."""
        return [part for part in self.parts if part.name.startswith(FILES_PREFIX)]
