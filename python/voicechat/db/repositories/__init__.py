"""Repositories: the only code that speaks SQL. They raise domain errors, never HTTP ones."""

from voicechat.db.repositories.audit import AuditLog
from voicechat.db.repositories.sessions import SessionRepository
from voicechat.db.repositories.users import MfaRepository, User, UserRepository

__all__ = ["AuditLog", "MfaRepository", "SessionRepository", "User", "UserRepository"]
