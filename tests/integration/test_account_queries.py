"""Consent and account queries end to end: the connect, callback, consents and accounts handlers, moto (DynamoDB, KMS,
Secrets Manager) and the offline 89C3 sandbox as the bank over real HTTPS with mTLS.

Personas (sandbox/README.md): Marc (consent given at the bank for his three accounts), Tech-N Co (no consent yet),
Julie (the bank refuses every refresh), Léa at 10207, Hugo at 17515 (a Caisse d'Epargne: no identity, no paging).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from aisp import wiring
from aisp.stet import PsuContext
from tests.integration.journey import (
    BANK,
    accounts,
    at_path,
    connect_persona,
    consent,
    event,
    list_connections,
)
from tests.sandbox.helpers import (
    HUGO,
    JULIE,
    LEA,
    MARC,
    MARC_ACCOUNTS,
    MARC_IBANS,
    SOPHIE,
    TECHN,
    TECHN_ACCOUNT,
    TECHN_IBAN,
)

pytestmark = pytest.mark.integration

ACCOUNTS = "/v1/connections/{bank}/accounts"
BALANCES = "/v1/connections/{bank}/accounts/{account}/balances"
TRANSACTIONS = "/v1/connections/{bank}/accounts/{account}/transactions"
# The seed's balances of Marc's "Compte perso" (89C3 sandbox guide): VALU, CLBD, OTHR.
SEED_BALANCES = [("VALU", "4321.95"), ("CLBD", "4179.95"), ("OTHR", "4348.95")]


def _accounts_of(load_event, lambda_context, *, sub="user-marc", bank=BANK):
    loaded = at_path(
        event(load_event, "accounts/list_accounts.json", sub=sub), ACCOUNTS.format(bank=bank), bank_code=bank
    )
    return accounts(loaded, lambda_context)


def _balances(load_event, lambda_context, account, *, sub="user-marc", bank=BANK):
    path = BALANCES.format(bank=bank, account=account)
    loaded = at_path(event(load_event, "accounts/get_balances.json", sub=sub), path, bank_code=bank, account_id=account)
    return accounts(loaded, lambda_context)


def _transactions(load_event, lambda_context, account, *, sub="user-marc", bank=BANK, **query):
    path = TRANSACTIONS.format(bank=bank, account=account)
    loaded = event(load_event, "accounts/get_transactions.json", sub=sub, **query)
    if not query:
        loaded.pop("queryStringParameters", None)
        loaded["rawQueryString"] = ""
    return accounts(at_path(loaded, path, bank_code=bank, account_id=account), lambda_context)


def _every_page(load_event, lambda_context, account, **query) -> tuple[list[dict[str, Any]], int]:
    """Follow next_cursor from the first page to the last: (every transaction, number of calls)."""
    response, page = _transactions(load_event, lambda_context, account, **query)
    assert response["statusCode"] == 200, page
    items, calls = list(page["transactions"]), 1
    while page["next_cursor"]:
        response, page = _transactions(load_event, lambda_context, account, cursor=page["next_cursor"])
        assert response["statusCode"] == 200, page
        items += page["transactions"]
        calls += 1
    return items, calls


def _submit(load_event, lambda_context, body, *, sub="user-marc", bank=BANK, key=None):
    loaded = at_path(event(load_event, "consents/submit_consent.json", sub=sub), f"/v1/connections/{bank}/consent")
    loaded["pathParameters"] = {"bank_code": bank}
    loaded["body"] = json.dumps(body)
    if key is None:
        loaded["headers"].pop("idempotency-key", None)
    else:
        loaded["headers"]["idempotency-key"] = key
    return consent(loaded, lambda_context)


def _problem(response, body, status, code):
    assert response["statusCode"] == status, body
    assert response["headers"]["Content-Type"] == "application/problem+json"
    assert body["code"] == code, body
    return body


def _fault(sandbox, admin, **rule):
    assert admin.post(f"{sandbox.admin_url}/faults", json=rule, timeout=5).status_code == 201


def _sandbox_transactions(gateway, user_id, account) -> list[Any]:
    """What the sandbox serves directly for the account (the same token, every page)."""
    _, tokens = gateway.connections.get_with_tokens(user_id, BANK)
    pages = (
        wiring.bank_clients()
        .get(BANK)
        .iter_transaction_pages(
            tokens.access_token.get_secret_value(), account, psu=PsuContext(ip_address="203.0.113.10")
        )
    )
    return [transaction for page in pages for transaction in page.transactions]


# ----------------------------------------------------------------------------------------------------------------
# The seed's chain for Marc
# ----------------------------------------------------------------------------------------------------------------


def test_marc_accounts_consent_balances_and_every_transaction_page(gateway, load_event, lambda_context):
    # Given Marc connected to B.P Grand Ouest through the bank's screens
    started, _ = connect_persona(load_event, lambda_context, identifier=MARC)

    # When his app lists his accounts: the seed's three, with the guide's balances on "Compte perso"
    response, listed = _accounts_of(load_event, lambda_context)
    assert response["statusCode"] == 200
    assert listed["connected_psu"] == "MALLOW MARC"
    by_iban = {account["iban"]: account for account in listed["accounts"]}
    assert list(by_iban) == list(MARC_IBANS)
    perso = by_iban[MARC_IBANS[0]]
    assert perso["account_id"] == MARC_ACCOUNTS[0] and perso["name"] == "Compte perso"
    assert [(b["type"], b["amount"]) for b in perso["balances"]] == SEED_BALANCES
    assert perso["links"] == {"balances": True, "transactions": True}

    # And sends his consent (all three accounts, identity, beneficiaries)
    all_ibans = list(MARC_IBANS)
    body = {"balances": all_ibans, "transactions": all_ibans, "psu_identity": True, "trusted_beneficiaries": True}
    response, submitted = _submit(load_event, lambda_context, body, key="marc-consent-1")
    assert response["statusCode"] == 200, submitted
    assert submitted["connection_id"] == started["connection_id"]
    assert submitted["consent"]["balances"] == all_ibans
    (listed_connection,) = list_connections(load_event, lambda_context)
    assert listed_connection["consent"]["transactions"] == all_ibans  # the snapshot is on the connection

    # Then his balances are the seed's
    response, balances = _balances(load_event, lambda_context, MARC_ACCOUNTS[0])
    assert response["statusCode"] == 200
    assert [(b["type"], b["amount"], b["currency"]) for b in balances["balances"]] == [
        (t, a, "EUR") for t, a in SEED_BALANCES
    ]

    # And every transaction page, followed through sealed cursors, adds up to what the sandbox serves directly
    items, calls = _every_page(load_event, lambda_context, MARC_ACCOUNTS[0])
    direct = _sandbox_transactions(gateway, "user-marc", MARC_ACCOUNTS[0])
    assert calls >= 4 and len(items) == len(direct) > 300  # 100 a page, about 90 days of history
    assert [t["entry_reference"] for t in items] == [t.entry_reference for t in direct]
    assert sum(Decimal(t["amount"]) for t in items) == sum(t.signed_amount for t in direct)
    assert {t["status"] for t in items} == {"booked", "pending"}
    assert all(t["remittance"] for t in items)

    # And all=true gives the same in one call; limit=250 too, in fewer, larger answers
    response, everything = _transactions(load_event, lambda_context, MARC_ACCOUNTS[0], all="true")
    assert response["statusCode"] == 200 and everything["next_cursor"] is None
    assert [t["id"] for t in everything["transactions"]] == [t["id"] for t in items]
    limited, limited_calls = _every_page(load_event, lambda_context, MARC_ACCOUNTS[0], limit="250")
    assert [t["id"] for t in limited] == [t["id"] for t in items] and limited_calls < calls

    # And identity (STET 1.4.0: connectedPsu) and trusted beneficiaries are there
    identity_event = event(load_event, "accounts/get_identity.json")
    response, identity = accounts(identity_event, lambda_context)
    assert response["statusCode"] == 200 and identity["full_name"] == "MALLOW MARC"
    response, beneficiaries = accounts(event(load_event, "accounts/get_trusted_beneficiaries.json"), lambda_context)
    assert response["statusCode"] == 200 and len(beneficiaries["beneficiaries"]) == 2


def test_the_calls_carry_the_psu_ip_so_the_daily_quota_never_applies(gateway, load_event, lambda_context):
    # Given Marc connected (unattended calls are limited to 4 a day per account and method at the sandbox)
    connect_persona(load_event, lambda_context, identifier=MARC)

    # When his app reads the same balances six times
    statuses = [_balances(load_event, lambda_context, MARC_ACCOUNTS[0])[0]["statusCode"] for _ in range(6)]

    # Then none is throttled: every call was attended (PSU-IP-Address = the caller's source IP)
    assert statuses == [200] * 6


def test_a_dates_window_is_inclusive_of_date_to(gateway, load_event, lambda_context):
    connect_persona(load_event, lambda_context, identifier=MARC)
    items, _ = _every_page(load_event, lambda_context, MARC_ACCOUNTS[0])
    booked = sorted({t["booking_date"] for t in items if t["booking_date"]})
    day = booked[len(booked) // 2]

    window, _ = _every_page(load_event, lambda_context, MARC_ACCOUNTS[0], date_from=day, date_to=day)

    assert window and {t["booking_date"] for t in window} == {day}
    assert len(window) == sum(1 for t in items if t["booking_date"] == day)


# ----------------------------------------------------------------------------------------------------------------
# Consent: before/after, a non-consented account, an account the user does not hold
# ----------------------------------------------------------------------------------------------------------------


def test_tech_n_co_before_and_after_consent(gateway, load_event, lambda_context):
    # Given Tech-N Co connected, with no consent at the bank yet
    connect_persona(load_event, lambda_context, identifier=TECHN, sub="user-technco")

    # Then its account is listed without balances or links, and its balances need a consent first
    response, listed = _accounts_of(load_event, lambda_context, sub="user-technco")
    assert response["statusCode"] == 200
    (account,) = listed["accounts"]
    assert (account["account_id"], account["iban"], account["usage"]) == (TECHN_ACCOUNT, TECHN_IBAN, "ORGA")
    assert account["balances"] == [] and account["links"] == {"balances": False, "transactions": False}
    response, body = _balances(load_event, lambda_context, TECHN_ACCOUNT, sub="user-technco")
    _problem(response, body, 403, "consent_required")
    response, body = _transactions(load_event, lambda_context, TECHN_ACCOUNT, sub="user-technco")
    _problem(response, body, 403, "consent_required")

    # When it consents to balances and transactions of its account
    body = {
        "balances": [TECHN_IBAN],
        "transactions": [TECHN_IBAN],
        "psu_identity": False,
        "trusted_beneficiaries": False,
    }
    response, submitted = _submit(load_event, lambda_context, body, sub="user-technco")
    assert response["statusCode"] == 200, submitted

    # Then the account comes with balances and links, and balances and transactions are served
    response, listed = _accounts_of(load_event, lambda_context, sub="user-technco")
    (account,) = listed["accounts"]
    assert account["balances"] and account["links"] == {"balances": True, "transactions": True}
    response, balances = _balances(load_event, lambda_context, TECHN_ACCOUNT, sub="user-technco")
    assert response["statusCode"] == 200 and balances["balances"]
    response, page = _transactions(load_event, lambda_context, TECHN_ACCOUNT, sub="user-technco")
    assert response["statusCode"] == 200 and page["transactions"]

    # And identity was not consented: a consent is on record, so it is account_not_consented now
    loaded = at_path(
        event(load_event, "accounts/get_identity.json", sub="user-technco"), "/v1/connections/13807/identity"
    )
    response, body = accounts(loaded, lambda_context)
    _problem(response, body, 403, "account_not_consented")


def test_an_account_left_out_of_the_consent_is_not_consented(gateway, load_event, lambda_context):
    connect_persona(load_event, lambda_context, identifier=MARC)
    only_first = [MARC_IBANS[0]]
    body = {"balances": only_first, "transactions": only_first, "psu_identity": False, "trusted_beneficiaries": False}
    assert _submit(load_event, lambda_context, body)[0]["statusCode"] == 200

    response, problem = _balances(load_event, lambda_context, MARC_ACCOUNTS[1])
    _problem(response, problem, 403, "account_not_consented")
    response, problem = _transactions(load_event, lambda_context, MARC_ACCOUNTS[2])
    _problem(response, problem, 403, "account_not_consented")
    assert _balances(load_event, lambda_context, MARC_ACCOUNTS[0])[0]["statusCode"] == 200
    # and the account list says so
    listed = _accounts_of(load_event, lambda_context)[1]["accounts"]
    assert [a["links"]["balances"] for a in listed] == [True, False, False]


def test_an_iban_the_user_does_not_hold_is_refused_by_the_bank(gateway, load_event, lambda_context):
    connect_persona(load_event, lambda_context, identifier=MARC)
    body = {"balances": [TECHN_IBAN], "transactions": [], "psu_identity": False, "trusted_beneficiaries": False}

    response, problem = _submit(load_event, lambda_context, body)

    _problem(response, problem, 400, "validation_error")
    assert list_connections(load_event, lambda_context)[0]["consent"] is None
    assert TECHN_IBAN not in json.dumps(problem)


def test_an_idempotent_replay_does_not_reach_the_bank_twice(
    gateway, sandbox, admin, load_event, lambda_context, monkeypatch
):
    monkeypatch.delenv("POWERTOOLS_IDEMPOTENCY_DISABLED", raising=False)
    connect_persona(load_event, lambda_context, identifier=MARC)
    # Count the AISP calls at the bank: a fault rule that never fires counts what it matches
    _fault(sandbox, admin, fault="500", scope="aisp", bank=BANK, ratio=0.0)
    body = {"balances": list(MARC_IBANS), "transactions": [], "psu_identity": False, "trusted_beneficiaries": False}

    first = _submit(load_event, lambda_context, body, key="replay-key")
    second = _submit(load_event, lambda_context, body, key="replay-key")

    assert first[0]["statusCode"] == second[0]["statusCode"] == 200 and first[1] == second[1]
    (rule,) = admin.get(f"{sandbox.admin_url}/state", timeout=5).json()["faults"]
    assert rule["calls"] == 1
    reused = _submit(load_event, lambda_context, {**body, "psu_identity": True}, key="replay-key")
    _problem(*reused, 422, "idempotency_key_reused")


# ----------------------------------------------------------------------------------------------------------------
# Cursors and other users
# ----------------------------------------------------------------------------------------------------------------


def test_a_tampered_or_foreign_cursor_is_refused(gateway, load_event, lambda_context):
    connect_persona(load_event, lambda_context, identifier=MARC)
    response, page = _transactions(load_event, lambda_context, MARC_ACCOUNTS[0])
    cursor = page["next_cursor"]
    tampered = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]

    for account, value in ((MARC_ACCOUNTS[0], tampered), (MARC_ACCOUNTS[1], cursor)):
        response, problem = _transactions(load_event, lambda_context, account, cursor=value)
        assert _problem(response, problem, 400, "validation_error")["detail"] == "invalid_cursor"
    response, problem = accounts(event(load_event, "accounts/get_transactions_forged_cursor.json"), lambda_context)
    _problem(response, problem, 400, "validation_error")


def test_another_users_bank_code_is_not_found(gateway, load_event, lambda_context):
    connect_persona(load_event, lambda_context, identifier=MARC)

    response, problem = _accounts_of(load_event, lambda_context, sub="user-eve")
    _problem(response, problem, 404, "connection_not_found")
    response, problem = _balances(load_event, lambda_context, MARC_ACCOUNTS[0], sub="user-eve")
    _problem(response, problem, 404, "connection_not_found")


# ----------------------------------------------------------------------------------------------------------------
# Tokens: refreshed on demand, refused refresh
# ----------------------------------------------------------------------------------------------------------------


def test_an_expired_access_token_is_refreshed_on_demand_then_served(
    gateway, sandbox, admin, load_event, lambda_context
):
    # Given Marc connected, and the bank expiring his access token before the expiry it announced
    connect_persona(load_event, lambda_context, identifier=MARC)
    _, before = gateway.connections.get_with_tokens("user-marc", BANK)
    assert admin.post(f"{sandbox.admin_url}/expire-access-tokens", json={"psu": MARC}, timeout=5).status_code == 200

    # When his app reads his balances
    response, balances = _balances(load_event, lambda_context, MARC_ACCOUNTS[0])

    # Then the bank's 401 made us refresh once, retry, and store the new token
    assert response["statusCode"] == 200, balances
    assert gateway.bank.counts.get("refresh") == 1
    connection, after = gateway.connections.get_with_tokens("user-marc", BANK)
    assert after.access_token.get_secret_value() != before.access_token.get_secret_value()
    assert after.refresh_token == before.refresh_token  # BPCE does not rotate it
    assert connection.status.value == "ACTIVE"


def test_a_refused_refresh_is_reauth_required_and_the_connection_says_so(
    gateway, sandbox, admin, load_event, lambda_context
):
    # Given Julie, who revoked the access at her bank: her first token works, every refresh is invalid_grant
    connect_persona(load_event, lambda_context, identifier=JULIE, sub="user-julie")
    assert _accounts_of(load_event, lambda_context, sub="user-julie")[0]["statusCode"] == 200
    assert admin.post(f"{sandbox.admin_url}/expire-access-tokens", json={"psu": JULIE}, timeout=5).status_code == 200

    # When her app reads her accounts
    response, problem = _accounts_of(load_event, lambda_context, sub="user-julie")

    # Then 409 reauth_required, the connection is REAUTH_REQUIRED, and the next call does not try the bank again
    _problem(response, problem, 409, "reauth_required")
    assert list_connections(load_event, lambda_context, sub="user-julie")[0]["status"] == "reauth_required"
    refreshes = gateway.bank.counts["refresh"]
    _problem(*_accounts_of(load_event, lambda_context, sub="user-julie"), 409, "reauth_required")
    assert gateway.bank.counts["refresh"] == refreshes


def test_an_expired_refresh_token_is_reauth_required(gateway, sandbox, admin, load_event, lambda_context):
    connect_persona(load_event, lambda_context, identifier=MARC)
    for switch in ("expire-refresh-tokens", "expire-access-tokens"):
        assert admin.post(f"{sandbox.admin_url}/{switch}", json={"psu": MARC}, timeout=5).status_code == 200

    _problem(*_balances(load_event, lambda_context, MARC_ACCOUNTS[0]), 409, "reauth_required")
    assert list_connections(load_event, lambda_context)[0]["status"] == "reauth_required"


# ----------------------------------------------------------------------------------------------------------------
# Bank faults, registry capabilities, every bank at once
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "status", "code", "retry_after"),
    [
        ({"fault": "429", "retry_after": 30}, 429, "bank_rate_limited", "30"),
        ({"fault": "tmrq"}, 429, "bank_rate_limited", "60"),
        ({"fault": "503", "times": 3}, 503, "bank_unavailable", None),  # the client retries a GET twice
        ({"fault": "500", "times": 3}, 503, "bank_unavailable", None),
    ],
)
def test_bank_faults_become_stable_codes(
    gateway, sandbox, admin, load_event, lambda_context, rule, status, code, retry_after
):
    connect_persona(load_event, lambda_context, identifier=MARC)
    _fault(sandbox, admin, scope="aisp", bank=BANK, **rule)

    response, problem = _accounts_of(load_event, lambda_context)

    _problem(response, problem, status, code)
    assert response["headers"].get("Retry-After") == retry_after
    assert "Limite" not in response["body"] and "INTE" not in response["body"]


def test_identity_at_a_bank_without_it_is_501_without_a_bank_call(gateway, sandbox, admin, load_event, lambda_context):
    # Given Hugo connected to the Caisse d'Epargne 17515, and a counter of AISP calls to that bank
    connect_persona(load_event, lambda_context, identifier=HUGO, sub="user-hugo", bank_code="17515")
    _fault(sandbox, admin, fault="500", scope="aisp", bank="17515", ratio=0.0)

    # When his app asks for his identity and his trusted beneficiaries
    for route in ("identity", "trusted-beneficiaries"):
        loaded = at_path(
            event(load_event, "accounts/get_identity_unsupported_bank.json", sub="user-hugo"),
            f"/v1/connections/17515/{route}",
        )
        _problem(*accounts(loaded, lambda_context), 501, "bank_feature_not_supported")

    # Then the bank was never called (the counter works: one accounts call counts one)
    (rule,) = admin.get(f"{sandbox.admin_url}/state", timeout=5).json()["faults"]
    assert rule["calls"] == 0
    assert _accounts_of(load_event, lambda_context, sub="user-hugo", bank="17515")[0]["statusCode"] == 200
    (rule,) = admin.get(f"{sandbox.admin_url}/state", timeout=5).json()["faults"]
    assert rule["calls"] == 1


def test_all_accounts_across_two_banks_with_one_failing(gateway, sandbox, admin, load_event, lambda_context):
    # Given one user connected to 13807 (as Marc) and to 10207 (as Léa)
    connect_persona(load_event, lambda_context, identifier=MARC)
    connect_persona(load_event, lambda_context, identifier=LEA, bank_code="10207")
    response, both = accounts(event(load_event, "accounts/list_all_accounts.json"), lambda_context)
    assert response["statusCode"] == 200 and both["errors"] == []
    assert {a["bank_code"] for a in both["accounts"]} == {"13807", "10207"}

    # When 10207 is down
    _fault(sandbox, admin, fault="503", scope="aisp", bank="10207", times=3)
    response, listed = accounts(event(load_event, "accounts/list_all_accounts.json"), lambda_context)

    # Then 13807's accounts are still listed, and 10207 is an error entry
    assert response["statusCode"] == 200
    assert [(a["bank_code"], a["account_id"]) for a in listed["accounts"]] == [(BANK, a) for a in MARC_ACCOUNTS]
    assert listed["errors"] == [
        {
            "bank_code": "10207",
            "status": 503,
            "code": "bank_unavailable",
            "title": "The bank is unavailable; retry later",
        }
    ]


# ----------------------------------------------------------------------------------------------------------------
# Deferred-debit cards
# ----------------------------------------------------------------------------------------------------------------


def test_a_card_goes_in_the_consent_then_is_listed_with_its_cash_account_and_its_transactions_read(
    gateway, load_event, lambda_context
):
    # Given Sophie (a current account and a deferred-debit card) connected
    connect_persona(load_event, lambda_context, identifier=SOPHIE, sub="user-sophie")
    response, listed = _accounts_of(load_event, lambda_context, sub="user-sophie")
    assert response["statusCode"] == 200, listed
    cash, card = listed["accounts"]
    assert (card["cash_account_type"], card["iban"], card["masked_pan"]) == ("CARD", None, "497010XXXXXX4242")
    assert card["linked_account"] == cash["account_id"]

    # When her app consents to the card's balances and transactions, and to the cash account's balances only
    body = {
        "balances": [cash["iban"], {"card": card["masked_pan"]}],
        "transactions": [{"card": card["masked_pan"]}],
        "psu_identity": False,
        "trusted_beneficiaries": False,
    }
    response, answer = _submit(load_event, lambda_context, body, sub="user-sophie")
    assert response["statusCode"] == 200, answer
    assert answer["consent"]["transactions"] == [{"card": "497010XXXXXX4242"}]

    # Then the bank applies it: the card is linked for both, the cash account for balances only
    _, listed = _accounts_of(load_event, lambda_context, sub="user-sophie")
    by_id = {account["account_id"]: account for account in listed["accounts"]}
    assert by_id[card["account_id"]]["links"] == {"balances": True, "transactions": True}
    assert by_id[cash["account_id"]]["links"] == {"balances": True, "transactions": False}
    # And the card's transactions (its slips) are readable; the cash account's are no longer consented
    response, page = _transactions(load_event, lambda_context, card["account_id"], sub="user-sophie")
    assert response["statusCode"] == 200, page
    assert page["transactions"] and all(
        t["remittance"][0].startswith(("CB ", "AVOIR CB ")) for t in page["transactions"]
    )
    response, problem = _transactions(load_event, lambda_context, cash["account_id"], sub="user-sophie")
    _problem(response, problem, 403, "account_not_consented")
