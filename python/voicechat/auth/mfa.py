"""TOTP (RFC 6238) second factor and single-use backup codes."""

from __future__ import annotations

import secrets
import time
from urllib.parse import quote

import pyotp

TOTP_PERIOD = 30
TOTP_DIGITS = 6
BACKUP_CODE_COUNT = 10
_BACKUP_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes (0/o, 1/l/i)


def new_secret() -> str:
    """A fresh base32 TOTP secret (160 bits)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, username: str, issuer: str) -> str:
    """The otpauth:// URI authenticator apps scan as a QR code."""
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD).provisioning_uri(
        name=username, issuer_name=quote(issuer, safe="") if "/" in issuer else issuer
    )


def matching_step(secret: str, code: str, *, now: float | None = None) -> int | None:
    """The time step (±1 for clock skew) at which `code` is valid, or None.

    Callers store the step and refuse any step not greater than the last one accepted, so a
    code is never accepted twice.
    """
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD)
    current = int((time.time() if now is None else now) // TOTP_PERIOD)
    for step in (current - 1, current, current + 1):
        if secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_backup_codes() -> list[str]:
    """Ten codes like `k7m2-x9qp-4t`, about 50 bits each."""
    codes = []
    for _ in range(BACKUP_CODE_COUNT):
        raw = "".join(secrets.choice(_BACKUP_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:4]}-{raw[4:8]}-{raw[8:]}")
    return codes


def normalize_backup_code(code: str) -> str:
    """Accept codes typed with or without dashes and in any case."""
    raw = code.replace("-", "").replace(" ", "").lower()
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}" if len(raw) == 10 else raw
