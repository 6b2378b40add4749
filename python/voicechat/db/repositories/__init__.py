"""Repositories: the only code that speaks SQL. They raise domain errors, never HTTP ones."""

from voicechat.db.repositories.audit import AuditLog
from voicechat.db.repositories.users import User, UserRepository

__all__ = ["AuditLog", "User", "UserRepository"]
