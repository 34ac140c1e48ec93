"""The quota ledger's contract, on the in-memory ledger (``tests/memory.py``) and the DynamoDB one on moto: units
taken up to the limit and not one more (racing callers included), given back, marked spent by the bank, per day
and per key, and listed by day."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, date, datetime

import pytest

from aisp.models.quota import QuotaKey, QuotaMethod, QuotaUsage
from tests.contract.conftest import DYNAMODB, MEMORY

DAY = date(2026, 12, 6)
EXPIRES = datetime(2026, 12, 8, tzinfo=UTC)
KEY = QuotaKey("13807", "user-marc", "038-CPT30019654051", QuotaMethod.TRANSACTIONS, DAY)


@pytest.fixture(params=[MEMORY, pytest.param(DYNAMODB, marks=pytest.mark.dynamodb)])
def ledger(request):
    if request.param == MEMORY:
        from tests.memory import MemoryQuotaLedger

        return MemoryQuotaLedger()
    request.getfixturevalue("aws")
    from aisp.dal import DynamoQuotaLedger

    return DynamoQuotaLedger()


def _take(ledger, key=KEY, limit=4):
    return ledger.reserve(key, limit=limit, expires_at=EXPIRES)


def test_units_are_taken_up_to_the_limit_and_no_further(ledger):
    taken = [_take(ledger) for _ in range(5)]

    assert taken[:4] == [QuotaUsage(used=n, limit=4) for n in (1, 2, 3, 4)]
    assert [usage.remaining for usage in taken[:4]] == [3, 2, 1, 0]
    assert taken[4] is None
    assert ledger.usage("13807", "user-marc", DAY) == [(KEY, QuotaUsage(used=4, limit=4))]


def test_each_account_method_user_bank_and_day_counts_apart(ledger):
    others = [
        KEY._replace(account_id="038-CPT30019654052"),
        KEY._replace(account_id=None, method=QuotaMethod.ACCOUNTS),
        KEY._replace(method=QuotaMethod.BALANCES),
        KEY._replace(user_id="user-other"),
        KEY._replace(bank_code="17515"),
        KEY._replace(day=date(2026, 12, 7)),
    ]
    for _ in range(4):
        assert _take(ledger) is not None

    assert [_take(ledger, key) for key in others] == [QuotaUsage(used=1, limit=4)] * len(others)
    assert _take(ledger) is None
    listed = dict(ledger.usage("13807", "user-marc", DAY))
    assert listed == {
        KEY: QuotaUsage(used=4, limit=4),
        others[0]: QuotaUsage(used=1, limit=4),
        others[1]: QuotaUsage(used=1, limit=4),
        others[2]: QuotaUsage(used=1, limit=4),
    }


def test_a_released_unit_can_be_taken_again_and_a_counter_never_goes_below_zero(ledger):
    for _ in range(4):
        _take(ledger)
    ledger.release(KEY)

    assert _take(ledger) == QuotaUsage(used=4, limit=4)
    fresh = KEY._replace(method=QuotaMethod.IDENTITY, account_id=None)
    ledger.release(fresh)  # nothing to give back
    assert _take(ledger, fresh) == QuotaUsage(used=1, limit=4)


def test_the_bank_saying_the_day_is_spent_stops_the_counter(ledger):
    _take(ledger)
    ledger.exhaust(KEY, limit=4, expires_at=EXPIRES)

    assert _take(ledger) is None
    assert ledger.usage("13807", "user-marc", DAY) == [(KEY, QuotaUsage(used=1, limit=4, exhausted=True))]
    assert QuotaUsage(used=1, limit=4, exhausted=True).remaining == 0
    fresh = KEY._replace(method=QuotaMethod.BALANCES)
    ledger.exhaust(fresh, limit=4, expires_at=EXPIRES)  # exhausted before any unit was taken
    assert _take(ledger, fresh) is None


def test_a_lowered_limit_applies_to_a_counter_already_started(ledger):
    _take(ledger)
    _take(ledger)

    assert _take(ledger, limit=2) is None
    assert _take(ledger, limit=3) == QuotaUsage(used=3, limit=3)


def test_racing_callers_never_take_more_than_the_limit(ledger, request):
    # DynamoDB applies a conditional update atomically per item; moto needs the lock to do the same.
    serialized = contextlib.nullcontext()
    if "aws" in request.fixturenames:
        from tests.fakes import serialize_dynamodb_writes

        serialized = serialize_dynamodb_writes()
    results: list[QuotaUsage | None] = []
    lock = threading.Lock()
    start = threading.Barrier(12)

    def caller() -> None:
        start.wait()
        usage = _take(ledger)
        with lock:
            results.append(usage)

    with serialized:
        threads = [threading.Thread(target=caller) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    granted = sorted(usage.used for usage in results if usage is not None)
    assert granted == [1, 2, 3, 4]
    assert results.count(None) == 8
