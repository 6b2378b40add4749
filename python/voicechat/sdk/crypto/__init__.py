"""End-to-end encryption for the SDK on vodozemac (Olm and Megolm); see docs/e2ee.md.

store = default_store(path, account="alice@chat.example", passphrase=secret)
crypto = await client.enable_encryption(store)
await client.send(dm.id, "hello")          # encrypted because the DM is
page = await client.messages(dm.id)         # decrypted, or `decryption_error` set
"""

from voicechat.sdk.crypto.machine import (
    ROTATE_AFTER_MESSAGES,
    ROTATE_AFTER_SECONDS,
    Crypto,
    CryptoError,
    Rejection,
)
from voicechat.sdk.crypto.store import (
    CryptoStore,
    KeyringStore,
    MemoryStore,
    PassphraseStore,
    StoreError,
    default_store,
    keyring_available,
)
from voicechat.sdk.crypto.trust import Device, TrustEvent, fingerprint

__all__ = [
    "ROTATE_AFTER_MESSAGES",
    "ROTATE_AFTER_SECONDS",
    "Crypto",
    "CryptoError",
    "CryptoStore",
    "Device",
    "KeyringStore",
    "MemoryStore",
    "PassphraseStore",
    "Rejection",
    "StoreError",
    "TrustEvent",
    "default_store",
    "fingerprint",
    "keyring_available",
]
