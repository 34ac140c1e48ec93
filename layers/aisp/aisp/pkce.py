"""PKCE (RFC 7636, ``S256``) for the authorization-code flow, and the code verifier sealed with its ``state``.

The verifier is stored with the pending authorization request, encrypted under a key derived from the ``state``
value itself (HMAC-SHA256 of a fixed label under the state, then AES-256-GCM). The table only holds the state's
hash, so a reader of the table cannot recover a verifier: only the callback, which receives the state from the
browser, can open it, and a blob moved to another record does not open with that record's state. No KMS call, no
stored key. Design: ``docs/connect.md``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from typing import Final

from aisp.errors import TokenIntegrityError

__all__ = ["code_challenge", "new_code_verifier", "open_verifier", "seal_verifier"]

# 64 random bytes → 86 characters of base64url, within RFC 7636's 43-128 and far above its 256-bit minimum.
VERIFIER_BYTES: Final = 64
_VERIFIER: Final = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_LABEL: Final = b"aisp:pkce-verifier:v1"
_NONCE_BYTES: Final = 12
_FORMAT: Final = b"\x01"


def new_code_verifier() -> str:
    """A fresh high-entropy ``code_verifier`` (RFC 7636 §4.1)."""
    return secrets.token_urlsafe(VERIFIER_BYTES)


def code_challenge(verifier: str) -> str:
    """``BASE64URL(SHA256(ASCII(verifier)))`` without padding (RFC 7636 §4.2, method ``S256``).

    Raises
    ------
    ValueError
        ``verifier`` is not 43-128 unreserved characters.
    """
    if not _VERIFIER.fullmatch(verifier):
        raise ValueError("a code_verifier is 43-128 characters of [A-Za-z0-9-._~]")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _key(state: str) -> bytes:
    return hmac.new(state.encode("utf-8"), _LABEL, hashlib.sha256).digest()


def seal_verifier(verifier: str, *, state: str) -> bytes:
    """``verifier`` encrypted under a key derived from ``state``."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415 - connect/callback only

    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(_key(state)).encrypt(nonce, verifier.encode("ascii"), _FORMAT + _LABEL)
    return _FORMAT + nonce + sealed


def open_verifier(blob: bytes, *, state: str) -> str:
    """The verifier :func:`seal_verifier` sealed.

    Raises
    ------
    TokenIntegrityError
        The blob is malformed, or ``state`` is not the one it was sealed with.
    """
    from cryptography.exceptions import InvalidTag  # noqa: PLC0415
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    if len(blob) <= 1 + _NONCE_BYTES or blob[:1] != _FORMAT:
        raise TokenIntegrityError("sealed code verifier is malformed")
    nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
    try:
        plain = AESGCM(_key(state)).decrypt(nonce, sealed, _FORMAT + _LABEL)
    except InvalidTag:
        raise TokenIntegrityError("sealed code verifier does not open with this state") from None
    return plain.decode("ascii")
