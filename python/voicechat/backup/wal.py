"""Archived WAL segments (point-in-time recovery, issue 14 point 4; not wired in yet).

A segment (or a `.history` / `.backup` file) is stored as `wal/<cluster>/<file name>.vcwal`
next to the backups: `<cluster>` is the PostgreSQL system identifier, because every cluster
names its segments alike (a fresh initdb after a lost disk starts again at
`000000010000000000000001`). The object is the container of `archive.py` (preamble, key check,
AES-256-GCM STREAM body); its plaintext is one JSON line (cluster, name, size and SHA-256 of
the segment) and the segment compressed with zlib (a segment closed by `archive_timeout` is
mostly zeros). The name and cluster inside are checked on the way out, so a segment stored
under another name is refused like an altered one.

`archive_segment` is what an `archive_command` runs: idempotent for a segment archived before
with the same content, refused (non-zero exit, PostgreSQL retries) for a different one.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from pathlib import Path

from voicechat.backup.archive import BackupKey, BackupRefused, OpeningReader, SealingWriter
from voicechat.backup.store import BackupStore

#: WAL file names PostgreSQL archives: segments, timeline histories, backup history files.
_WAL_NAME = re.compile(
    r"^(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$"
)


def wal_object(cluster: int, name: str) -> str:
    """The store object of WAL file `name` of cluster `cluster`."""
    if not _WAL_NAME.match(name):
        raise BackupRefused(f"{name!r} is not the name of a WAL file")
    return f"wal/{cluster}/{name}.vcwal"


def seal_segment(key: BackupKey, cluster: int, name: str, data: bytes) -> bytes:
    """The stored form of one WAL file."""
    header = {
        "cluster": str(cluster),
        "name": name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    out = bytearray()
    writer = SealingWriter(key, out.extend)
    writer.write(json.dumps(header).encode() + b"\n")
    writer.write(zlib.compress(data, 1))
    writer.finish()
    return bytes(out)


def open_segment(key: BackupKey, cluster: int, name: str, blob: bytes) -> bytes:
    """The WAL file `name` of `cluster` from its stored form, authenticated and checked.

    Raises:
        BackupRefused: wrong key, altered or cut object, another segment's object.
    """
    reader = OpeningReader(key, iter([blob]))
    plaintext = reader.read() or b""
    reader.drain()
    line, _, body = plaintext.partition(b"\n")
    try:
        header = json.loads(line)
        data = zlib.decompress(body)
    except (ValueError, zlib.error):
        raise BackupRefused(f"WAL file {name} of cluster {cluster} is malformed") from None
    if header.get("name") != name or header.get("cluster") != str(cluster):
        raise BackupRefused(
            f"WAL object {name} of cluster {cluster} holds {header.get('name')} of cluster "
            f"{header.get('cluster')}: it was renamed"
        )
    if len(data) != header.get("size") or hashlib.sha256(data).hexdigest() != header.get("sha256"):
        raise BackupRefused(f"WAL file {name} of cluster {cluster} fails its checksum")
    return data


def archive_segment(
    store: BackupStore, key: BackupKey, cluster: int, path: Path, name: str
) -> bool:
    """Store WAL file `path` as `name`; returns False when it was archived before, identical.

    Raises:
        BackupRefused: an object of that name holds other content (never overwritten), or
            the stored one cannot be opened.
    """
    data = path.read_bytes()
    target = wal_object(cluster, name)
    existing = store.read_object(target)
    if existing is not None:
        if open_segment(key, cluster, name, existing) == data:
            return False
        raise BackupRefused(
            f"WAL file {name} of cluster {cluster} is archived already with other content; "
            f"not overwritten"
        )
    sink = store.put_object(target)
    try:
        sink.write(seal_segment(key, cluster, name, data))
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    return True
