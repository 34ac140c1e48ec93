"""Sealed transaction cursors: opaque, authenticated, bound to user + bank + account, expiring. Their key, from one
KMS GenerateMac per container: tests/aws/test_cursor_key.py."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta

import pytest

from aisp.cursors import CURSOR_PREFIX, CursorPosition, CursorSealer
from aisp.errors import InvalidCursorError, KeyServiceError

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
BOUND = {"user_id": "user-marc", "bank_code": "13807", "account_id": "038-CPT30019654051"}
NEXT = "https://www.13807.sandbox.api.89c3.com/stet/psd2/v1/accounts/038-CPT30019654051/transactions?page=2"


@pytest.fixture
def sealer():
    return CursorSealer(b"k" * 32, ttl_seconds=3600)


def _flip(cursor: str, index: int) -> str:
    body = cursor[len(CURSOR_PREFIX) :]
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[index] ^= 0x01
    return CURSOR_PREFIX + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_a_cursor_round_trips_and_hides_the_bank_url(sealer):
    # Given a position on the bank's second page, 40 transactions in
    position = CursorPosition(page_url=NEXT, skip=40)

    # When sealed and opened again for the same user, bank and account
    cursor = sealer.seal(position, now=NOW, **BOUND)
    opened = sealer.open(cursor, now=NOW + timedelta(minutes=59), **BOUND)

    # Then the position is back, and nothing of it is readable in the cursor
    assert opened == position
    assert cursor.startswith(CURSOR_PREFIX)
    # (needles of 5 characters or more: a shorter one turns up by chance in random base64 often enough to flake)
    assert "13807" not in cursor and "page=" not in cursor and "CPT30019654051" not in cursor
    assert sealer.seal(position, now=NOW, **BOUND) != cursor  # a fresh nonce each time


def test_a_first_page_position_keeps_its_dates(sealer):
    position = CursorPosition(page_url=None, date_from=date(2026, 9, 1), date_to=date(2026, 10, 1), skip=7)

    assert sealer.open(sealer.seal(position, now=NOW, **BOUND), now=NOW, **BOUND) == position


@pytest.mark.parametrize(
    ("changed", "value"),
    [("user_id", "user-eve"), ("bank_code", "10207"), ("account_id", "038-CPT30019654052")],
)
def test_a_cursor_opens_only_for_its_user_bank_and_account(sealer, changed, value):
    cursor = sealer.seal(CursorPosition(page_url=NEXT), now=NOW, **BOUND)

    with pytest.raises(InvalidCursorError) as raised:
        sealer.open(cursor, now=NOW, **{**BOUND, changed: value})

    assert raised.value.message == "invalid_cursor"
    assert raised.value.details["reason"] == "forged_or_foreign"


@pytest.mark.parametrize("index", [0, 11, 12, 20, -1])  # nonce, ciphertext, tag
def test_a_tampered_cursor_does_not_open(sealer, index):
    cursor = sealer.seal(CursorPosition(page_url=NEXT), now=NOW, **BOUND)

    with pytest.raises(InvalidCursorError):
        sealer.open(_flip(cursor, index), now=NOW, **BOUND)


def test_a_cursor_sealed_with_another_key_does_not_open(sealer):
    forged = CursorSealer(b"x" * 32, ttl_seconds=3600).seal(
        CursorPosition(page_url="https://evil.example/"), now=NOW, **BOUND
    )

    with pytest.raises(InvalidCursorError):
        sealer.open(forged, now=NOW, **BOUND)


def test_an_expired_cursor_does_not_open(sealer):
    cursor = sealer.seal(CursorPosition(page_url=NEXT), now=NOW, **BOUND)

    with pytest.raises(InvalidCursorError) as raised:
        sealer.open(cursor, now=NOW + timedelta(hours=1), **BOUND)

    assert raised.value.details["reason"] == "expired"


@pytest.mark.parametrize(
    "cursor",
    ["", "c1.", "c2.AAAA", "c1.not base64!", "c1." + "A" * 10, "c1." + "A" * 3000, NEXT, "c1.===="],
)
def test_malformed_cursors_are_invalid_not_errors(sealer, cursor):
    with pytest.raises(InvalidCursorError):
        sealer.open(cursor, now=NOW, **BOUND)


def test_the_key_must_be_256_bits():
    with pytest.raises(KeyServiceError):
        CursorSealer(b"short", ttl_seconds=60)
