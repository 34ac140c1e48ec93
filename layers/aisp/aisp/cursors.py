"""Sealed transaction cursors: the client carries where the next page is, and can neither read nor choose it.

A ``next_cursor`` is ``c1.`` + base64url(nonce || AES-256-GCM(position)): the bank's next-page link (already checked
to be on the bank's origin) or the first page's dates, an offset into that page and an expiry, with the user, bank
and account as additional data. The key is derived once per container from the KMS HMAC key ``CursorKey``
(:data:`KEY_LABEL`). Design, and the key's alternatives: ``docs/accounts.md`` (Transactions and cursors).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from aisp.errors import InvalidCursorError, KeyServiceError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "CURSOR_PREFIX",
    "FEED_CURSOR_PREFIX",
    "FEED_CURSOR_SECONDS",
    "MAX_CURSOR_LENGTH",
    "CursorPosition",
    "CursorSealer",
    "KEY_LABEL",
]

CURSOR_PREFIX: Final = "c1."
# A sync cursor (a position in a connection's change feed, docs/sync.md): its own prefix and binding, and it opens
# for as long as the feed keeps its changes.
FEED_CURSOR_PREFIX: Final = "s1."
FEED_CURSOR_SECONDS: Final = 400 * 86_400
KEY_LABEL: Final = b"aisp:transactions-cursor:v1"
MAX_CURSOR_LENGTH: Final = 2048
MAX_SKIP: Final = 10_000
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
KEY_BYTES: Final = 32
_BODY: Final = re.compile(r"^[A-Za-z0-9_-]+$")


class CursorPosition(NamedTuple):
    """Where the next transactions start.

    ``page_url`` is the bank page to fetch (absolute, from the bank's own ``next`` link or a page we already
    fetched), or ``None`` for the first page of ``date_from``/``date_to`` (STET ``dateFrom``/``dateTo``);
    ``skip`` is how many transactions of that page were already served.
    """

    page_url: str | None
    date_from: date | None = None
    date_to: date | None = None
    skip: int = 0


def _associated_data(user_id: str, bank_code: str, account_id: str, *, prefix: str = CURSOR_PREFIX) -> bytes:
    # JSON of a list: unambiguous whatever the values contain.
    bound = json.dumps([user_id, bank_code, account_id], separators=(",", ":"), ensure_ascii=True)
    return prefix.encode() + b"\x00" + bound.encode("ascii")


class CursorSealer:
    """Seals and opens cursors with one AES-256-GCM key.

    Parameters
    ----------
    key
        32 bytes (see :func:`derive_cursor_key`).
    ttl_seconds
        How long a sealed cursor opens.
    """

    def __init__(self, key: bytes, *, ttl_seconds: int) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415 - first cursor only

        if len(key) != KEY_BYTES:
            raise KeyServiceError("cursor key must be 256 bits", details={"length": len(key)})
        self._aead: AESGCM = AESGCM(key)
        self._ttl = ttl_seconds

    def __repr__(self) -> str:
        return f"CursorSealer(ttl_seconds={self._ttl})"

    def seal(self, position: CursorPosition, *, user_id: str, bank_code: str, account_id: str, now: datetime) -> str:
        """An opaque cursor for ``position``, valid for this user, bank and account until ``now + ttl``."""
        payload: dict[str, Any] = {
            "u": position.page_url,
            "f": position.date_from.isoformat() if position.date_from else None,
            "t": position.date_to.isoformat() if position.date_to else None,
            "s": position.skip,
            "e": int(now.timestamp()) + self._ttl,
        }
        return self._seal(CURSOR_PREFIX, payload, _associated_data(user_id, bank_code, account_id))

    def _seal(self, prefix: str, payload: dict[str, Any], associated: bytes) -> str:
        nonce = os.urandom(NONCE_BYTES)
        plaintext = json.dumps(payload, separators=(",", ":")).encode()
        sealed = nonce + self._aead.encrypt(nonce, plaintext, associated)
        return prefix + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def seal_feed(self, seq: int, *, user_id: str, bank_code: str, connection_id: str, now: datetime) -> str:
        """A sync cursor: after change ``seq`` of the connection's feed, for this user and bank, for 400 days."""
        associated = _associated_data(user_id, bank_code, connection_id, prefix=FEED_CURSOR_PREFIX)
        return self._seal(FEED_CURSOR_PREFIX, {"q": seq, "e": int(now.timestamp()) + FEED_CURSOR_SECONDS}, associated)

    def open_feed(self, cursor: str, *, user_id: str, bank_code: str, connection_id: str, now: datetime) -> int:
        """The feed position sealed in a sync cursor.

        Raises
        ------
        InvalidCursorError
            Malformed, tampered with, another user's, bank's or connection's (a reconnection keeps its id), a
            transactions cursor, or older than 400 days.
        """
        associated = _associated_data(user_id, bank_code, connection_id, prefix=FEED_CURSOR_PREFIX)
        plaintext = self._open(FEED_CURSOR_PREFIX, cursor, associated)
        try:
            payload = json.loads(plaintext)
            seq, expires = payload["q"], payload["e"]
            if not (isinstance(seq, int) and seq >= 0 and isinstance(expires, int)):
                raise ValueError("bad feed cursor fields")
        except (ValueError, TypeError, KeyError):
            raise InvalidCursorError("unreadable") from None
        if expires <= int(now.timestamp()):
            raise InvalidCursorError("expired")
        return seq

    def open(self, cursor: str, *, user_id: str, bank_code: str, account_id: str, now: datetime) -> CursorPosition:
        """The position sealed in ``cursor``.

        Raises
        ------
        InvalidCursorError
            Malformed, tampered with, issued for another user/bank/account (all three fail authentication),
            or expired.
        """
        plaintext = self._open(CURSOR_PREFIX, cursor, _associated_data(user_id, bank_code, account_id))
        position, expires = _decode(plaintext)
        if expires <= int(now.timestamp()):
            raise InvalidCursorError("expired")
        return position

    def _open(self, prefix: str, cursor: str, associated: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag  # noqa: PLC0415

        if len(cursor) > MAX_CURSOR_LENGTH or not cursor.startswith(prefix):
            raise InvalidCursorError("malformed")
        body = cursor[len(prefix) :]
        if not _BODY.fullmatch(body):
            raise InvalidCursorError("malformed")
        try:
            sealed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise InvalidCursorError("malformed") from None
        if len(sealed) < NONCE_BYTES + TAG_BYTES:
            raise InvalidCursorError("malformed")
        nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ciphertext, associated)
        except InvalidTag:
            raise InvalidCursorError("forged_or_foreign") from None


def _decode(plaintext: bytes) -> tuple[CursorPosition, int]:
    # Authenticated, so written by us: a failure here means a format change, not an attack; still never a 500.
    try:
        payload = json.loads(plaintext)
        url, date_from, date_to, skip, expires = (payload[k] for k in ("u", "f", "t", "s", "e"))
        if not (isinstance(skip, int) and 0 <= skip <= MAX_SKIP and isinstance(expires, int)):
            raise ValueError("bad cursor fields")
        if url is not None and not isinstance(url, str):
            raise ValueError("bad cursor url")
        position = CursorPosition(
            page_url=url,
            date_from=date.fromisoformat(date_from) if date_from else None,
            date_to=date.fromisoformat(date_to) if date_to else None,
            skip=skip,
        )
    except (ValueError, TypeError, KeyError):
        raise InvalidCursorError("unreadable") from None
    return position, expires
