"""Account queries over the in-memory stack with fake banks: tokens and the 401 retry, the consent error rule,
registry capabilities, transaction paging with sealed cursors, and GET /v1/accounts across banks."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from aisp import errors
from aisp.logic import accounts
from aisp.logic.accounts import TransactionQuery
from aisp.models.connection import ConnectionStatus, ConsentSnapshot
from aisp.models.psu import PsuInfo
from tests.fakes import stet_account, stet_transaction
from tests.seed import seed_json

MARC = "user-marc"
ACCOUNT = "038-CPT30019654051"
IBAN = "FR7613807008043001965405158"
PSU = PsuInfo(ip_address="203.0.113.10", http_method="GET", user_agent="FintechApp/1.0")


@pytest.fixture
def marc(active_connection, account_bank):
    """Marc's ACTIVE connection to 13807 and his bank's data: one account, 250 transactions."""
    connection = active_connection(MARC, "13807")
    account_bank.accounts["13807"] = {"accounts": [stet_account(ACCOUNT, IBAN)], "connectedPsu": "MALLOW MARC"}
    account_bank.balances[("13807", ACCOUNT)] = {
        "balances": [
            {"balanceType": "CLBD", "name": "Solde", "balanceAmount": {"amount": "4179.95", "currency": "EUR"}}
        ]
    }
    account_bank.transactions[("13807", ACCOUNT)] = [
        stet_transaction(n, amount=f"{n}.10", debit=n % 3 != 0) for n in range(250)
    ]
    return connection


def _all_pages(account_services, query=None, **kwargs):
    """Follow next_cursor to the end; returns (pages, every transaction)."""
    query = query or TransactionQuery()
    pages, items = [], []
    while True:
        page = accounts.get_transactions(MARC, "13807", ACCOUNT, query, psu=PSU, services=account_services, **kwargs)
        pages.append(page)
        items += page.transactions
        if page.next_cursor is None:
            return pages, items
        query = TransactionQuery(cursor=page.next_cursor, limit=query.limit, all_pages=query.all_pages)


# ----------------------------------------------------------------------------------------------------------------
# Connection, tokens, PSU context
# ----------------------------------------------------------------------------------------------------------------


def test_accounts_are_read_with_the_stored_token_and_the_psu_context(account_services, marc, account_bank):
    listed = accounts.list_accounts(MARC, "13807", psu=PSU, services=account_services)

    assert [a.account_id for a in listed.accounts] == [ACCOUNT]
    assert listed.connected_psu == "MALLOW MARC"
    (call,) = account_bank.calls
    assert call.kwargs["access_token"] == "access-1"
    assert call.kwargs["psu"] is PSU


def test_an_unknown_bank_is_refused_before_any_read(account_services, account_bank):
    with pytest.raises(errors.UnknownBankError):
        accounts.list_accounts(MARC, "99999", psu=PSU, services=account_services)
    assert account_bank.calls == []


def test_another_users_connection_is_not_found(account_services, marc, account_bank):
    with pytest.raises(errors.ConnectionNotFoundError):
        accounts.list_accounts("user-eve", "13807", psu=PSU, services=account_services)
    assert account_bank.calls == []


def test_a_deleted_connection_is_not_found_and_a_refused_one_needs_reauth(account_services, services, marc, clock):
    # Given Marc's connection marked REAUTH_REQUIRED
    reauth = services.connections.mark_reauth_required(marc, now=clock.now())
    with pytest.raises(errors.ReauthRequiredError):
        accounts.list_accounts(MARC, "13807", psu=PSU, services=account_services)

    # When he deletes it
    services.connections.revoke(reauth, now=clock.now(), purge_at=clock.now() + timedelta(days=30))

    # Then it is gone for the account routes
    with pytest.raises(errors.ConnectionNotFoundError):
        accounts.list_accounts(MARC, "13807", psu=PSU, services=account_services)


def test_a_401_refreshes_the_token_once_and_retries_once(account_services, marc, account_bank, bank, services):
    # Given a bank that refuses the stored access token once (expired earlier than it said)
    account_bank.fail("get_accounts", errors.BankTokenInvalidError("401", status=401, bank_code="13807"))

    listed = accounts.list_accounts(MARC, "13807", psu=PSU, services=account_services)

    # Then one refresh happened and the call was retried with the new token, which is now stored
    assert listed.accounts
    assert [c.operation for c in bank.calls] == ["refresh"]
    assert [c.kwargs["access_token"] for c in account_bank.calls] == ["access-1", "access-token-0001-secret"]
    _, tokens = services.connections.get_with_tokens(MARC, "13807")
    assert tokens.access_token.get_secret_value() == "access-token-0001-secret"


def test_a_second_401_is_not_retried_again(account_services, marc, account_bank, bank):
    refused = [errors.BankTokenInvalidError("401", status=401, bank_code="13807") for _ in range(2)]
    account_bank.fail("get_accounts", *refused)

    with pytest.raises(errors.BankTokenInvalidError):
        accounts.list_accounts(MARC, "13807", psu=PSU, services=account_services)
    assert len(account_bank.calls) == 2 and len(bank.of("refresh")) == 1


def test_a_refused_refresh_makes_the_connection_reauth_required(account_services, marc, account_bank, bank, services):
    account_bank.fail("get_accounts", errors.BankTokenInvalidError("401", status=401, bank_code="13807"))
    bank.refresh_error = errors.ReauthRequiredError("invalid_grant", status=400, bank_code="13807")

    with pytest.raises(errors.ReauthRequiredError):
        accounts.list_accounts(MARC, "13807", psu=PSU, services=account_services)

    assert services.connections.find(MARC, "13807").status is ConnectionStatus.REAUTH_REQUIRED


def test_a_token_about_to_expire_is_refreshed_before_the_call(account_services, marc, account_bank, bank, clock):
    clock.advance(minutes=59, seconds=30)

    accounts.list_accounts(MARC, "13807", psu=PSU, services=account_services)

    assert len(bank.of("refresh")) == 1
    assert account_bank.calls[0].kwargs["access_token"] == "access-token-0001-secret"


# ----------------------------------------------------------------------------------------------------------------
# Consent errors, bank errors, registry capabilities
# ----------------------------------------------------------------------------------------------------------------


def _denied():
    return errors.BankAccessDeniedError("403", status=403, bank_code="13807")


def test_a_403_without_any_consent_on_record_is_consent_required(account_services, marc, account_bank):
    account_bank.fail("get_balances", _denied())

    with pytest.raises(errors.ConsentRequiredError):
        accounts.get_balances(MARC, "13807", ACCOUNT, psu=PSU, services=account_services)


def test_a_403_with_a_consent_on_record_is_account_not_consented(account_services, services, marc, account_bank, clock):
    services.connections.store_consent(marc, consent=ConsentSnapshot(balances=[IBAN]), now=clock.now())
    account_bank.fail("get_balances", _denied())

    with pytest.raises(errors.ConsentRejectedError) as raised:
        accounts.get_balances(MARC, "13807", "038-CPT30019654052", psu=PSU, services=account_services)
    assert not isinstance(raised.value, errors.ConsentRequiredError)


def test_tmrq_is_rate_limiting_not_a_consent_problem(account_services, marc, account_bank):
    account_bank.fail("get_balances", errors.BankRateLimitedError("TMRQ", status=403, bank_code="13807"))

    with pytest.raises(errors.BankRateLimitedError):
        accounts.get_balances(MARC, "13807", ACCOUNT, psu=PSU, services=account_services)


def test_balances_of_an_unknown_account_are_not_found(account_services, marc):
    with pytest.raises(errors.AccountNotFoundError):
        accounts.get_balances(MARC, "13807", "NOPE", psu=PSU, services=account_services)


def test_balances_are_normalized(account_services, marc):
    (balance,) = accounts.get_balances(MARC, "13807", ACCOUNT, psu=PSU, services=account_services)
    assert (balance.type, balance.amount, balance.currency) == ("CLBD", "4179.95", "EUR")


def test_a_bank_501_is_feature_not_supported(account_services, marc, account_bank):
    account_bank.fail(
        "get_trusted_beneficiaries", errors.BankNotImplementedError("NIMP", status=501, bank_code="13807")
    )

    with pytest.raises(errors.BankFeatureNotSupportedError):
        accounts.get_trusted_beneficiaries(MARC, "13807", psu=PSU, services=account_services)


@pytest.mark.parametrize(
    ("use_case", "bank_code"),
    [
        (accounts.get_identity, "17515"),
        (accounts.get_trusted_beneficiaries, "17515"),
        (accounts.get_trusted_beneficiaries, "10207"),
    ],
)
def test_a_feature_the_registry_says_is_missing_never_reaches_the_bank(
    account_services, account_bank, use_case, bank_code
):
    # No connection at all: the registry answers first, without reading DynamoDB or calling the bank
    with pytest.raises(errors.BankFeatureNotSupportedError):
        use_case(MARC, bank_code, psu=PSU, services=account_services)
    assert account_bank.calls == []


def test_identity_on_stet_1_4_0_comes_from_connected_psu(account_services, marc, account_bank):
    # The seed says GET /endUserIdentity comes "with STET standard v1.4.2.17"; 13807's sandbox product is 1.4.0.47,
    # which has no such endpoint, yet the seed's own GET /accounts for Marc ends with "connectedPsu": "MALLOW MARC".
    # So the registry's identity=true on 13807 stands, served from GET /accounts (here the guide's body as printed).
    account_bank.accounts["13807"] = seed_json("accounts-marc")

    identity = accounts.get_identity(MARC, "13807", psu=PSU, services=account_services)

    assert identity.full_name == "MALLOW MARC"
    assert [c.operation for c in account_bank.calls] == ["get_accounts"]


def test_identity_on_stet_1_4_0_without_connected_psu_is_a_consent_error(account_services, marc, account_bank):
    del account_bank.accounts["13807"]["connectedPsu"]

    with pytest.raises(errors.ConsentRequiredError):
        accounts.get_identity(MARC, "13807", psu=PSU, services=account_services)


def test_identity_on_stet_1_4_2_uses_end_user_identity(account_services, active_connection, account_bank):
    active_connection(MARC, "10207")
    account_bank.identities["10207"] = {"connectedPsu": "MOREAU LEA", "connectedPsuFirstName": "Lea"}

    identity = accounts.get_identity(MARC, "10207", psu=PSU, services=account_services)

    assert (identity.full_name, identity.first_name) == ("MOREAU LEA", "Lea")
    assert [c.operation for c in account_bank.calls] == ["get_end_user_identity"]


def test_trusted_beneficiaries_are_normalized(account_services, marc, account_bank):
    account_bank.beneficiaries["13807"] = {"beneficiaries": [{"id": "B1", "creditor": {"name": "DUPONT"}}]}

    (found,) = accounts.get_trusted_beneficiaries(MARC, "13807", psu=PSU, services=account_services)
    assert (found.id, found.name) == ("B1", "DUPONT")


# ----------------------------------------------------------------------------------------------------------------
# Transactions and cursors
# ----------------------------------------------------------------------------------------------------------------


def test_without_limit_one_bank_page_per_call_until_the_last(account_services, marc, account_bank):
    pages, items = _all_pages(account_services)

    assert [len(p.transactions) for p in pages] == [100, 100, 50]
    assert [t.id for t in items] == [f"TX{n:05d}" for n in range(250)]
    assert sum(float(t.amount) for t in items) == pytest.approx(
        sum((-1 if n % 3 else 1) * (n + 0.1) for n in range(250))
    )
    # The bank's next links were followed as given (never a URL from the client)
    assert [c.kwargs["page_url"] for c in account_bank.of("get_transactions")] == [
        None,
        account_bank.page_url("13807", ACCOUNT, 2),
        account_bank.page_url("13807", ACCOUNT, 3),
    ]


@pytest.mark.parametrize("limit", [1, 30, 99, 100, 150, 250, 500])
def test_a_limit_is_a_maximum_and_paging_loses_and_repeats_nothing(account_services, marc, limit):
    pages, items = _all_pages(account_services, TransactionQuery(limit=limit))

    assert all(len(p.transactions) <= limit for p in pages)
    assert [t.id for t in items] == [f"TX{n:05d}" for n in range(250)]


def test_a_limit_on_page_boundaries_fetches_each_bank_page_once(account_services, marc, account_bank):
    _all_pages(account_services, TransactionQuery(limit=200))

    assert len(account_bank.of("get_transactions")) == 3


def test_all_follows_every_page_in_one_call(account_services, marc, account_bank):
    page = accounts.get_transactions(
        MARC, "13807", ACCOUNT, TransactionQuery(all_pages=True), psu=PSU, services=account_services
    )

    assert len(page.transactions) == 250 and page.next_cursor is None


def test_all_stops_when_the_time_budget_runs_out_and_returns_a_cursor(account_services, marc, account_bank):
    remaining = iter([60_000, 2_000])  # enough after page 1, not after page 2

    first = accounts.get_transactions(
        MARC,
        "13807",
        ACCOUNT,
        TransactionQuery(all_pages=True),
        psu=PSU,
        remaining_ms=lambda: next(remaining),
        services=account_services,
    )

    assert len(first.transactions) == 200 and first.next_cursor
    rest = accounts.get_transactions(
        MARC,
        "13807",
        ACCOUNT,
        TransactionQuery(cursor=first.next_cursor, all_pages=True),
        psu=PSU,
        services=account_services,
    )
    assert len(rest.transactions) == 50 and rest.next_cursor is None


def test_all_stops_at_its_cap_with_a_cursor(account_services, marc, monkeypatch):
    monkeypatch.setattr(accounts, "ALL_MAX_TRANSACTIONS", 120)

    page = accounts.get_transactions(
        MARC, "13807", ACCOUNT, TransactionQuery(all_pages=True), psu=PSU, services=account_services
    )

    assert len(page.transactions) == 120 and page.next_cursor


def test_dates_go_to_the_bank_with_an_exclusive_date_to(account_services, marc, account_bank):
    query = TransactionQuery(date_from=date(2026, 11, 1), date_to=date(2026, 11, 30))

    accounts.get_transactions(MARC, "13807", ACCOUNT, query, psu=PSU, services=account_services)

    (call,) = account_bank.of("get_transactions")
    assert (call.kwargs["date_from"], call.kwargs["date_to"]) == (date(2026, 11, 1), date(2026, 12, 1))


@pytest.mark.parametrize(("bank_code", "days"), [("13807", 90), ("17515", 90)])
def test_a_date_from_beyond_the_banks_history_is_refused_naming_the_limit(
    account_services, active_connection, account_bank, clock, bank_code, days
):
    # Given a connection, and the registry's history depth for the bank
    active_connection(MARC, bank_code)
    account_bank.transactions[(bank_code, ACCOUNT)] = [stet_transaction(1)]
    today = clock.now().date()
    earliest = today - timedelta(days=days)

    # When the app asks from one day before what the bank keeps
    with pytest.raises(errors.InvalidRequestError) as caught:
        accounts.get_transactions(
            MARC,
            bank_code,
            ACCOUNT,
            TransactionQuery(date_from=earliest - timedelta(days=1)),
            psu=PSU,
            services=account_services,
        )

    # Then a 400 names the limit and the earliest date, and the bank is not called
    assert f"{days} days" in caught.value.message and earliest.isoformat() in caught.value.message
    assert caught.value.details == {"field": "date_from", "history_days": days, "earliest": earliest.isoformat()}
    assert account_bank.calls == []
    # And from the earliest day on, the bank is asked
    accounts.get_transactions(
        MARC, bank_code, ACCOUNT, TransactionQuery(date_from=earliest), psu=PSU, services=account_services
    )
    assert [c.operation for c in account_bank.calls] == ["get_transactions"]


def test_the_89c3_sandboxs_13807_lists_no_trusted_beneficiaries_as_the_seed_says(account_services, marc, account_bank):
    # Given the registry as the 89C3 sandbox serves it (the seed: beneficiaries "will not be available")
    from dataclasses import replace

    from aisp.banks import load_registry

    sandbox = replace(
        account_services,
        connections=replace(account_services.connections, registry=load_registry(environment="sandbox")),
    )

    # When / Then 501 without calling the bank
    with pytest.raises(errors.BankFeatureNotSupportedError):
        accounts.get_trusted_beneficiaries(MARC, "13807", psu=PSU, services=sandbox)
    assert account_bank.calls == []


@pytest.mark.parametrize(
    "query",
    [
        TransactionQuery(all_pages=True, limit=10),
        TransactionQuery(cursor="c1.x", date_from=date(2026, 11, 1)),
        TransactionQuery(date_from=date(2026, 11, 2), date_to=date(2026, 11, 1)),
    ],
)
def test_conflicting_parameters_are_refused_before_any_call(account_services, marc, account_bank, query):
    with pytest.raises(errors.InvalidRequestError):
        accounts.get_transactions(MARC, "13807", ACCOUNT, query, psu=PSU, services=account_services)
    assert account_bank.calls == []


def test_a_cursor_from_another_account_or_user_is_refused(account_services, marc, active_connection, account_bank):
    first = accounts.get_transactions(MARC, "13807", ACCOUNT, TransactionQuery(), psu=PSU, services=account_services)
    active_connection("user-eve", "13807")
    calls = len(account_bank.calls)

    with pytest.raises(errors.InvalidCursorError):
        accounts.get_transactions(
            MARC,
            "13807",
            "038-CPT30019654052",
            TransactionQuery(cursor=first.next_cursor),
            psu=PSU,
            services=account_services,
        )
    with pytest.raises(errors.InvalidCursorError):
        accounts.get_transactions(
            "user-eve", "13807", ACCOUNT, TransactionQuery(cursor=first.next_cursor), psu=PSU, services=account_services
        )
    assert len(account_bank.calls) == calls


def test_a_cursor_expires(account_services, marc, clock):
    first = accounts.get_transactions(MARC, "13807", ACCOUNT, TransactionQuery(), psu=PSU, services=account_services)
    clock.advance(hours=2)

    with pytest.raises(errors.InvalidCursorError):
        accounts.get_transactions(
            MARC, "13807", ACCOUNT, TransactionQuery(cursor=first.next_cursor), psu=PSU, services=account_services
        )


def test_transactions_of_a_non_consented_account(account_services, marc, account_bank):
    account_bank.fail("get_transactions", _denied())

    with pytest.raises(errors.ConsentRequiredError):
        accounts.get_transactions(MARC, "13807", ACCOUNT, TransactionQuery(), psu=PSU, services=account_services)


def test_a_bank_400_on_transactions_is_a_validation_error(account_services, marc, account_bank):
    account_bank.fail("get_transactions", errors.BankClientError("400", status=400, bank_code="13807"))

    with pytest.raises(errors.InvalidRequestError):
        accounts.get_transactions(MARC, "13807", ACCOUNT, TransactionQuery(), psu=PSU, services=account_services)


def test_an_unknown_credit_debit_indicator_is_a_bank_protocol_error(account_services, marc, account_bank):
    account_bank.transactions[("13807", ACCOUNT)][0]["creditDebitIndicator"] = "????"

    with pytest.raises(errors.BankProtocolError):
        accounts.get_transactions(MARC, "13807", ACCOUNT, TransactionQuery(), psu=PSU, services=account_services)


# ----------------------------------------------------------------------------------------------------------------
# Every bank at once
# ----------------------------------------------------------------------------------------------------------------


def test_all_accounts_lists_every_active_bank_and_reports_the_failing_one(
    account_services, services, marc, active_connection, account_bank, clock
):
    # Given Marc connected to 13807 and 10207 (which is down), and a REAUTH_REQUIRED connection to 17515
    active_connection(MARC, "10207")
    refused = active_connection(MARC, "17515")
    services.connections.mark_reauth_required(refused, now=clock.now())
    original = account_bank.get_accounts

    def per_bank(bank_code, **kwargs):
        if bank_code == "10207":
            raise errors.BankUnavailableError("503", status=503, bank_code="10207")
        return original(bank_code, **kwargs)

    account_bank.get_accounts = per_bank

    result = accounts.list_all_accounts(MARC, psu=PSU, services=account_services)

    # Then the REAUTH_REQUIRED connection is reported, never silently dropped, and its bank is not called
    assert [(a.bank_code, a.account_id) for a in result.accounts] == [("13807", ACCOUNT)]
    assert [(bank_code, type(error)) for bank_code, error in result.failures] == [
        ("17515", errors.ReauthRequiredError),
        ("10207", errors.BankUnavailableError),
    ]
    assert "17515" not in {call.bank_code for call in account_bank.calls}


def test_all_accounts_without_connections_is_empty(account_services, account_bank):
    result = accounts.list_all_accounts(MARC, psu=PSU, services=account_services)

    assert result.accounts == [] and result.failures == [] and account_bank.calls == []


# ----------------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------------


def _emitted(capsys) -> list[dict]:
    import json

    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    return [blob for blob in blobs if "BankCall" in blob]


def test_every_bank_call_is_counted_and_timed_by_bank_and_outcome(account_services, marc, account_bank, capsys):
    capsys.readouterr()
    account_bank.fail("get_balances", errors.BankRateLimitedError("429", status=429, bank_code="13807"))

    accounts.list_accounts(MARC, "13807", psu=PSU, services=account_services)
    with pytest.raises(errors.BankRateLimitedError):
        accounts.get_balances(MARC, "13807", ACCOUNT, psu=PSU, services=account_services)

    ok, throttled = _emitted(capsys)
    assert (ok["bank_code"], ok["operation"], ok["outcome"], ok["BankCall"]) == ("13807", "get_accounts", "ok", [1.0])
    assert (throttled["operation"], throttled["outcome"]) == ("get_balances", "rate_limited")
    (definition,) = ok["_aws"]["CloudWatchMetrics"]
    assert sorted(set(definition["Dimensions"][0]) - {"service"}) == ["bank_code", "operation", "outcome"]
    assert {m["Name"]: m["Unit"] for m in definition["Metrics"]} == {"BankCall": "Count", "BankLatency": "Milliseconds"}
    assert ok["BankLatency"][0] >= 0
