"""Unattended reads within the bank's daily quota (``aisp.logic.quota``, ``aisp.logic.bank_calls``): a unit reserved
before each unattended bank call, per account and method and Paris day; the fifth refused without calling the bank;
attended reads never counted; next pages free; units given back when the call never left, closed when the bank says
the day is spent; the reset at Paris midnight, on DST days too; what is left, reported to the answer's meter."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from aisp import errors
from aisp.logic import accounts
from aisp.logic.quota import QuotaMeter, quota_today
from aisp.models.psu import PsuInfo
from aisp.models.quota import QuotaMethod, QuotaUsage, paris_day, quota_day_seconds, quota_resets_at
from tests.fakes import stet_account, stet_transaction

USER = "user-marc"
BANK = "13807"
ACCOUNT = "038-CPT30019654051"
OTHER = "038-CPT30019654052"
IBAN = "FR7613807008043001965405158"
PSU = PsuInfo(ip_address="203.0.113.10", http_method="GET")


@pytest.fixture
def marc(account_services, active_connection, account_bank):
    return _connect_marc(active_connection, account_bank)


def _connect_marc(active_connection, account_bank):
    connection = active_connection(USER, BANK)
    account_bank.accounts[BANK] = {"accounts": [stet_account(ACCOUNT, IBAN)], "connectedPsu": "MALLOW MARC"}
    balances = {
        "balances": [{"balanceType": "CLBD", "name": "Solde", "balanceAmount": {"amount": "1", "currency": "EUR"}}]
    }
    account_bank.balances[(BANK, ACCOUNT)] = balances
    account_bank.balances[(BANK, OTHER)] = balances
    account_bank.transactions[(BANK, ACCOUNT)] = [stet_transaction(n) for n in range(250)]  # 3 bank pages
    return connection


def _balances(services, *, psu=None, account=ACCOUNT, meter=None):
    return accounts.get_balances(USER, BANK, account, psu=psu, services=services, meter=meter)


def test_the_fifth_unattended_read_of_a_day_is_refused_without_calling_the_bank(marc, account_services, account_bank):
    meter = QuotaMeter()
    for _ in range(4):
        _balances(account_services, meter=meter)

    with pytest.raises(errors.QuotaExhaustedError) as refused:
        _balances(account_services)

    assert len(account_bank.of("get_balances")) == 4
    today = paris_day(account_services.connections.clock.now())
    assert refused.value.retry_at == quota_resets_at(today)
    assert refused.value.details == {
        "bank_code": BANK,
        "method": "balances",
        "limit": 4,
        "retry_at": quota_resets_at(today).isoformat(),
    }
    assert meter.lowest == QuotaUsage(used=4, limit=4) and meter.day == today


def test_unattended_calls_send_no_psu_context_and_attended_ones_are_never_counted(
    marc, account_services, account_bank, quota_ledger
):
    for _ in range(6):
        _balances(account_services, psu=PSU)
    _balances(account_services)

    assert [call.kwargs["psu"] for call in account_bank.of("get_balances")] == [PSU] * 6 + [None]
    today = paris_day(account_services.connections.clock.now())
    assert [(key.method, usage.used) for key, usage in quota_ledger.usage(BANK, USER, today)] == [
        (QuotaMethod.BALANCES, 1)
    ]


def test_each_account_and_method_has_its_own_four(marc, account_services, account_bank):
    for _ in range(4):
        _balances(account_services)
    _balances(account_services, account=OTHER)
    accounts.list_accounts(USER, BANK, psu=None, services=account_services)
    accounts.get_transactions(USER, BANK, ACCOUNT, accounts.TransactionQuery(), psu=None, services=account_services)

    listed = quota_today(USER, BANK, services=account_services)
    assert [(item.method.value, item.account_id, item.used, item.remaining) for item in listed.usage] == [
        ("accounts", None, 1, 3),
        ("balances", ACCOUNT, 4, 0),
        ("balances", OTHER, 1, 3),
        ("transactions", ACCOUNT, 1, 3),
    ]
    assert listed.limit == 4 and listed.resets_at == quota_resets_at(listed.day)


def test_following_the_pages_of_one_listing_counts_once(marc, account_services, account_bank, quota_ledger):
    query = accounts.TransactionQuery(all_pages=True)
    answer = accounts.get_transactions(USER, BANK, ACCOUNT, query, psu=None, services=account_services)
    first = accounts.get_transactions(
        USER, BANK, ACCOUNT, accounts.TransactionQuery(), psu=None, services=account_services
    )
    following = accounts.get_transactions(
        USER, BANK, ACCOUNT, accounts.TransactionQuery(cursor=first.next_cursor), psu=None, services=account_services
    )

    assert len(answer.transactions) == 250 and len(account_bank.of("get_transactions")) == 3 + 1 + 1
    assert len(following.transactions) == 100
    today = paris_day(account_services.connections.clock.now())
    ((_, usage),) = quota_ledger.usage(BANK, USER, today)
    assert usage.used == 2  # the all=true listing and the first page of the second; its next page was free


def test_a_call_that_never_left_gives_its_unit_back(marc, account_services, account_bank, quota_ledger):
    unsent = errors.BankUnavailableError(
        "bank unreachable", bank_code=BANK, details={"failure": "timeout", "sent": False}
    )
    account_bank.fail("get_balances", unsent)
    with pytest.raises(errors.BankUnavailableError):
        _balances(account_services)
    today = paris_day(account_services.connections.clock.now())
    assert quota_ledger.usage(BANK, USER, today)[0][1].used == 0

    # One that reached the bank and failed counts, as the bank counts it
    account_bank.fail("get_balances", errors.BankUnavailableError("bank unavailable", status=503, bank_code=BANK))
    with pytest.raises(errors.BankUnavailableError):
        _balances(account_services)
    assert quota_ledger.usage(BANK, USER, today)[0][1].used == 1


def test_the_bank_saying_the_quota_is_spent_closes_the_day(marc, account_services, account_bank, quota_ledger):
    account_bank.fail("get_balances", errors.BankRateLimitedError("too many requests", status=429, bank_code=BANK))
    with pytest.raises(errors.BankRateLimitedError):
        _balances(account_services)

    with pytest.raises(errors.QuotaExhaustedError):
        _balances(account_services)
    assert len(account_bank.of("get_balances")) == 1
    (item,) = quota_today(USER, BANK, services=account_services).usage
    assert (item.used, item.remaining) == (1, 0)
    _balances(account_services, psu=PSU)  # the user, present, is still served


def test_the_retry_after_a_401_uses_the_same_unit(marc, account_services, account_bank, quota_ledger):
    account_bank.fail(
        "get_balances", errors.BankTokenInvalidError("bank rejected the access token", status=401, bank_code=BANK)
    )

    _balances(account_services)

    today = paris_day(account_services.connections.clock.now())
    assert len(account_bank.of("get_balances")) == 2
    assert quota_ledger.usage(BANK, USER, today)[0][1].used == 1


@pytest.mark.parametrize(
    ("before_midnight", "day_seconds"),
    [
        (datetime(2026, 12, 6, 22, 59, 59, tzinfo=UTC), 86_400),  # winter: Paris is UTC+1
        (datetime(2027, 3, 27, 22, 59, 59, tzinfo=UTC), 86_400),  # the day before spring's DST change
        (datetime(2027, 3, 28, 21, 59, 59, tzinfo=UTC), 82_800),  # 28 March 2027: 23 hours
        (datetime(2027, 10, 31, 22, 59, 59, tzinfo=UTC), 90_000),  # 31 October 2027: 25 hours
        (datetime(2027, 7, 14, 21, 59, 59, tzinfo=UTC), 86_400),  # summer: Paris is UTC+2
    ],
)
def test_the_counters_reset_at_paris_midnight_dst_days_included(
    account_services, active_connection, account_bank, clock, before_midnight, day_seconds
):
    clock.current = before_midnight - timedelta(minutes=5)
    _connect_marc(active_connection, account_bank)  # connected that evening
    clock.current = before_midnight
    for _ in range(4):
        _balances(account_services)
    with pytest.raises(errors.QuotaExhaustedError) as refused:
        _balances(account_services)

    midnight = before_midnight + timedelta(seconds=1)
    assert refused.value.retry_at == midnight
    assert quota_day_seconds(paris_day(before_midnight)) == day_seconds
    clock.current = midnight
    assert paris_day(midnight) == paris_day(before_midnight) + timedelta(days=1)
    _balances(account_services)  # a new Paris day: four again
    assert quota_today(USER, BANK, services=account_services).usage[0].used == 1


def test_paris_days_and_resets():
    assert paris_day(datetime(2026, 12, 6, 23, 0, tzinfo=UTC)) == date(2026, 12, 7)
    assert paris_day(datetime(2026, 12, 6, 22, 59, 59, tzinfo=UTC)) == date(2026, 12, 6)
    assert quota_resets_at(date(2027, 3, 27)) == datetime(2027, 3, 27, 23, 0, tzinfo=UTC)
    assert quota_resets_at(date(2027, 3, 28)) == datetime(2027, 3, 28, 22, 0, tzinfo=UTC)
    assert quota_resets_at(date(2027, 10, 31)) == datetime(2027, 10, 31, 23, 0, tzinfo=UTC)


def test_every_bank_at_once_spends_one_unit_per_bank_and_reports_the_fewest_left(
    account_services, active_connection, account_bank
):
    for bank in (BANK, "17515"):
        active_connection(USER, bank)
        account_bank.accounts[bank] = {"accounts": [stet_account(ACCOUNT, IBAN)]}
    meter = QuotaMeter()
    accounts.list_accounts(USER, "17515", psu=None, services=account_services)

    result = accounts.list_all_accounts(USER, psu=None, services=account_services, meter=meter)

    assert len(result.accounts) == 2 and result.failures == []
    assert meter.lowest == QuotaUsage(used=2, limit=4)
    assert {call.bank_code for call in account_bank.of("get_accounts")} == {BANK, "17515"}


def test_an_unattended_read_never_calls_the_bank_twice_on_one_unit(
    marc, account_services, account_bank, quota_ledger, services, clock
):
    import dataclasses

    from aisp.logic.remembered import RememberedConnections
    from aisp.models.connection import ConsentSnapshot

    remembering = dataclasses.replace(account_services, remembered=RememberedConnections())
    _balances(remembering, psu=PSU)  # remembered by this container
    # The consent changes elsewhere: what this container remembers is stale
    services.connections.store_consent(
        services.connections.find(USER, BANK), consent=ConsentSnapshot(balances=[IBAN]), now=clock.now()
    )
    before = len(account_bank.of("get_balances"))

    _balances(remembering)

    assert len(account_bank.of("get_balances")) == before + 1
    today = paris_day(clock.now())
    assert quota_ledger.usage(BANK, USER, today)[0][1].used == 1
