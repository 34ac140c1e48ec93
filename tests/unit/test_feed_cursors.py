"""Sync cursors (``CursorSealer.seal_feed``/``open_feed``): a position in a connection's change feed, opaque, bound
to its user, bank and connection, open for 400 days, never mistaken for a transactions cursor."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta

import pytest

from aisp.cursors import FEED_CURSOR_PREFIX, CursorPosition, CursorSealer
from aisp.errors import InvalidCursorError

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
BOUND = {"user_id": "user-marc", "bank_code": "13807", "connection_id": "cn_marc_13807"}


@pytest.fixture
def sealer():
    return CursorSealer(os.urandom(32), ttl_seconds=3600)


def test_a_feed_cursor_opens_for_its_connection_for_a_year_and_more(sealer):
    # A position long enough that its digits cannot turn up in the random base64 by chance
    seq = 9_182_736_455
    cursor = sealer.seal_feed(seq, now=NOW, **BOUND)

    body = cursor.removeprefix(FEED_CURSOR_PREFIX)
    assert cursor.startswith(FEED_CURSOR_PREFIX) and str(seq) not in body
    assert str(seq).encode() not in base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert sealer.open_feed(cursor, now=NOW + timedelta(days=399), **BOUND) == seq
    with pytest.raises(InvalidCursorError) as expired:
        sealer.open_feed(cursor, now=NOW + timedelta(days=400), **BOUND)
    assert expired.value.details["reason"] == "expired"


@pytest.mark.parametrize(
    "other",
    [
        {"user_id": "user-alice"},
        {"bank_code": "17515"},
        {"connection_id": "cn_marc_13807_old"},
    ],
)
def test_a_feed_cursor_is_refused_for_another_user_bank_or_connection(sealer, other):
    cursor = sealer.seal_feed(7, now=NOW, **BOUND)

    with pytest.raises(InvalidCursorError) as refused:
        sealer.open_feed(cursor, now=NOW, **(BOUND | other))

    assert refused.value.details["reason"] == "forged_or_foreign"


def test_feed_and_transactions_cursors_never_open_as_each_other(sealer):
    feed = sealer.seal_feed(7, now=NOW, **BOUND)
    page = sealer.seal(
        CursorPosition(page_url=None), user_id="user-marc", bank_code="13807", account_id="cn_marc_13807", now=NOW
    )

    with pytest.raises(InvalidCursorError):
        sealer.open(feed, user_id="user-marc", bank_code="13807", account_id="cn_marc_13807", now=NOW)
    with pytest.raises(InvalidCursorError):
        sealer.open_feed(page, now=NOW, **BOUND)
    # The same body under the other prefix does not authenticate either
    with pytest.raises(InvalidCursorError):
        sealer.open_feed(FEED_CURSOR_PREFIX + page[3:], now=NOW, **BOUND)


@pytest.mark.parametrize("forged", ["", "s1.", "s1.!!!", "s1." + "A" * 40, "s1." + "A" * 3000, "c1.AAAA"])
def test_a_forged_feed_cursor_is_refused(sealer, forged):
    with pytest.raises(InvalidCursorError):
        sealer.open_feed(forged, now=NOW, **BOUND)
