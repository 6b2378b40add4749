"""File storage: uploads and avatars, encrypted at rest, in a local directory or an S3 bucket.

See docs/storage.md for the object format, the sniffing policy and the access rules.
"""

from voicechat.db.repositories.files import FileRepository, StoredFile, file_url
from voicechat.storage.backends import Backend, LocalBackend, ObjectMissing, S3Backend
from voicechat.storage.service import (
    FileStorage,
    SealedUpload,
    authorize_download,
    avatar_url,
    open_storage,
)

__all__ = [
    "Backend",
    "FileRepository",
    "FileStorage",
    "LocalBackend",
    "ObjectMissing",
    "S3Backend",
    "SealedUpload",
    "StoredFile",
    "authorize_download",
    "avatar_url",
    "file_url",
    "open_storage",
]
