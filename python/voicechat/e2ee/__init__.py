"""End-to-end encryption, server side: the key server and to-device relay (SPEC §5).

The server stores public keys and ciphertext and relays messages between devices. It checks
what it can (each device signs its own keys) but is never trusted by clients: they verify the
signatures themselves and accept room keys only over Olm.
"""
