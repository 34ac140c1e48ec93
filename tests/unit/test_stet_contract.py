"""Contract tests against the official STET files (tests/fixtures/stet, see its SOURCE.md).

Requests: every call :class:`~aisp.stet.BankClient` builds is checked against the spec of the bank's STET version
(operation, path and query parameters, headers, Accept, Content-Type, body). 1.4.2 has no public spec file we could
retrieve whole, so a 1.4.2 bank is checked against 1.5.0.43 minus what 1.5 added to requests (``owners`` in the
consent body).

Responses: every response example the spec gives for an AIS operation (whole bodies in 1.5, item examples in 1.4.0.47,
wrapped in their list), and bodies generated from each operation's schema, go through the client and the API models
without losing amounts, currencies, dates, statuses, credit/debit, entry references or links.

The bank is an in-process ``requests`` adapter (no socket): it records what the client sends and answers the body the
test gives.
"""

from __future__ import annotations

import copy
import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisp.models.accounts import (
    BalanceItem,
    BeneficiaryItem,
    IdentityResponse,
    ListAccountsResponse,
    TransactionItem,
)
from aisp.stet import BankClient, ConsentRequest, PsuContext, mapping
from tests.stet_contract import REFERENCE_DIR as STET_REFERENCE
from tests.stet_contract import (
    SOURCES,
    InProcessBank,
    Json,
    Operation,
    Spec,
    extract,
    from_schema,
    in_process_client,
    load_extract,
    load_reference,
)

ORIGIN = "https://www.13807.live.api.89c3.com"
TOKEN = "access-token-1"
IBAN = "FR7613807008043001965405158"
ACCOUNT_ID = "038-CPT30019654051"
FULL_PSU = PsuContext(
    ip_address="192.168.0.1",
    ip_port=51000,
    http_method="GET",
    date="Wed, 06 Nov 2019 10:03:13 GMT",
    geo_location="GEO:48.8566;2.3522",
    user_agent="Mozilla/5.0",
    referer="https://app.example.com/",
    accept="text/html",
    accept_charset="utf-8",
    accept_encoding="gzip",
    accept_language="fr-FR",
    device_id="5b3f3f6e-8a3c-4c1e-9d2a-0c6b9c1f2a11",
)


def _drop_owners(document: Json) -> None:
    # STET 1.4.2's Access has balances, transactions, trustedBeneficiaries and psuIdentity; "owners" came with 1.5
    # (CR378). Nothing else of a request changed between 1.4.2.17 (jgh-/psd2-clj) and 1.5.0.43.
    document["components"]["schemas"]["Access"]["required"].remove("owners")


def spec_for(stet_version: str) -> Spec:
    """The spec a bank of ``stet_version`` is checked against."""
    if stet_version.startswith("1.4.0"):
        return Spec(load_extract("1.4.0.47"))
    if stet_version.startswith("1.4.2"):
        return Spec(load_extract("1.5.0.43"), patches=_drop_owners)
    return Spec(load_extract("1.5.0.43"))


PREFIXES = {"1.4.0.47": "/stet/psd2/v1", "1.4.2.17": "/stet/psd2/v1.4.2", "1.5.0.43": "/stet/psd2/v1.5"}


# ----------------------------------------------------------------------------------------------------------------
# An in-process bank
# ----------------------------------------------------------------------------------------------------------------


def client_for(stet_version: str, bank: InProcessBank, *, date_format: str = "date-time") -> BankClient:
    return in_process_client(
        bank, base_url=ORIGIN, api_prefix=PREFIXES[stet_version], stet_version=stet_version, date_format=date_format
    )


# ----------------------------------------------------------------------------------------------------------------
# Requests
# ----------------------------------------------------------------------------------------------------------------


def _every_call(client: BankClient, stet_version: str) -> None:
    consent = ConsentRequest(balances=[IBAN], transactions=[IBAN], psu_identity=True, trusted_beneficiaries=True)
    # A deferred-debit card too: STET's AccountIdentification "other" with scheme CPAN
    cards = ConsentRequest(balances=[IBAN], card_balances=["497010XXXXXX4242"], card_transactions=["497010XXXXXX4242"])
    for psu in (FULL_PSU, None):
        client.get_accounts(TOKEN, psu)
        client.put_consents(TOKEN, consent, psu)
        client.put_consents(TOKEN, cards, psu)
        client.get_balances(TOKEN, ACCOUNT_ID, psu)
        client.get_transactions_page(TOKEN, ACCOUNT_ID, psu=psu)
        client.get_transactions_page(TOKEN, ACCOUNT_ID, psu=psu, date_from=date(2026, 3, 1), date_to=date(2026, 4, 1))
        client.get_transactions_page(TOKEN, "123-card", psu=psu, date_from=date(2026, 11, 2))
        client.get_trusted_beneficiaries(TOKEN, psu)
        if not stet_version.startswith("1.4.0"):  # 1.4.0.47 has no GET /end-user-identity (the logic never asks)
            client.get_end_user_identity(TOKEN, psu)


@pytest.mark.parametrize("stet_version", list(PREFIXES))
def test_every_request_the_client_builds_conforms_to_the_banks_stet_version(stet_version):
    # Given a bank of this version that accepts everything
    bank = InProcessBank(answer=lambda method, _url: (201, None) if method == "PUT" else (204, None))
    spec = spec_for(stet_version)

    # When the client makes every AISP call it knows, with and without a PSU context
    _every_call(client_for(stet_version, bank), stet_version)

    # Then each request is one of the spec's operations, with its parameters, headers, Accept and body as specified
    problems = {
        f"{seen.method} {seen.url}": found
        for seen in bank.seen
        if (
            found := spec.check_request(
                seen.method, seen.url, seen.headers, seen.body, base=ORIGIN + PREFIXES[stet_version]
            )
        )
    }
    assert problems == {}
    assert len(bank.seen) == (16 if stet_version.startswith("1.4.0") else 18)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r.__setattr__("url", r.url.replace("T00:00:00%2B01:00", "")), "is not a 'date-time'"),
        (lambda r: r.headers.pop("X-Request-ID"), "'X-Request-ID' is missing"),
        (lambda r: r.headers.__setitem__("X-Request-ID", "x" * 71), "is too long"),
        (lambda r: r.headers.__setitem__("Accept", "application/xml"), "accepts none"),
        (lambda r: r.__setattr__("url", r.url + "&page=2"), "'page' is not in the spec"),
        (lambda r: r.__setattr__("url", r.url.replace("/transactions", "/transaction")), "no such operation"),
    ],
    ids=["plain-date", "no-request-id", "long-request-id", "xml-accept", "unknown-param", "unknown-path"],
)
def test_the_request_check_fails_what_the_spec_forbids(mutate, expected):
    # Given a conforming GET /transactions request of a 1.5 bank
    bank = InProcessBank(answer=lambda _m, _u: (204, None))
    client_for("1.5.0.43", bank).get_transactions_page(TOKEN, ACCOUNT_ID, psu=None, date_from=date(2026, 1, 5))
    (request,) = bank.seen
    spec = spec_for("1.5.0.43")
    base = ORIGIN + PREFIXES["1.5.0.43"]
    assert spec.check_request(request.method, request.url, request.headers, request.body, base=base) == []

    # When it is altered / Then the check names the breach
    mutate(request)
    problems = spec.check_request(request.method, request.url, request.headers, request.body, base=base)
    assert any(expected in problem for problem in problems), problems


def test_a_1_4_2_consent_body_would_break_stet_1_5_and_the_check_says_so():
    # Given the consent body the client builds for a 1.4.2 bank (no "owners")
    bank = InProcessBank(answer=lambda _m, _u: (201, None))
    client_for("1.4.2.17", bank).put_consents(TOKEN, ConsentRequest(balances=[IBAN]), None)
    (request,) = bank.seen

    # When checked against the unpatched 1.5 spec / Then the missing member is named
    problems = spec_for("1.5.0.43").check_request(
        "PUT", request.url.replace("v1.4.2", "v1.5"), request.headers, request.body, base=ORIGIN + "/stet/psd2/v1.5"
    )
    assert problems == ["body <root>: 'owners' is a required property"]


# ----------------------------------------------------------------------------------------------------------------
# Responses: nothing lost between the bank's body and the API's models
# ----------------------------------------------------------------------------------------------------------------

_STATUS = {"BOOK": "booked", "PDNG": "pending", "FUTR": "future", "INFO": "information", "RJCT": "rejected"}


def _day(value: Any) -> date | None:
    return date.fromisoformat(value[:10]) if isinstance(value, str) else None


def _amount(value: Any) -> Decimal:
    return Decimal(str(value))


def _check_balance(raw: Json, item: BalanceItem) -> None:
    assert item.type == raw["balanceType"]
    assert Decimal(item.amount) == _amount(raw["balanceAmount"]["amount"])
    assert item.currency == raw["balanceAmount"]["currency"]
    assert item.reference_date == _day(raw.get("referenceDate"))


def _check_accounts(raw: Json, listed: ListAccountsResponse) -> None:
    # An account without a resourceId (optional in STET) cannot be queried: it is left out, every other one is kept.
    accounts = [account for account in raw.get("accounts") or [] if account.get("resourceId")]
    assert len(listed.accounts) == len(accounts)
    for account, item in zip(accounts, listed.accounts, strict=True):
        identification = account.get("accountId") or {}
        assert item.account_id == account.get("resourceId")
        assert item.iban == identification.get("iban")
        assert item.currency == (account.get("currency") or identification.get("currency"))
        assert item.cash_account_type == account.get("cashAccountType")
        assert item.linked_account == account.get("linkedAccount")
        for balance, balance_item in zip(account.get("balances") or [], item.balances, strict=True):
            _check_balance(balance, balance_item)
        links = account.get("_links")
        if links is not None:
            assert (item.links.balances, item.links.transactions) == ("balances" in links, "transactions" in links)
    assert listed.connected_psu == raw.get("connectedPsu")


def _check_transactions(raw: Json, items: list[TransactionItem], next_url: str | None) -> None:
    transactions = raw.get("transactions") or []
    assert len(items) == len(transactions)
    for transaction, item in zip(transactions, items, strict=True):
        amount = abs(_amount(transaction["transactionAmount"]["amount"]))
        debit = transaction["creditDebitIndicator"] == "DBIT"
        assert Decimal(item.amount) == (-amount if debit else amount)
        assert item.currency == transaction["transactionAmount"]["currency"]
        assert item.credit_debit == ("debit" if debit else "credit")
        assert item.status == _STATUS.get(transaction["status"], "other")
        assert item.entry_reference == transaction.get("entryReference")
        assert item.id == (transaction.get("resourceId") or transaction.get("entryReference"))
        for name, value in (
            ("bookingDate", item.booking_date),
            ("valueDate", item.value_date),
            ("transactionDate", item.transaction_date),
        ):
            assert value == _day(transaction.get(name))
        remittance = transaction.get("remittanceInformation")
        lines = remittance if isinstance(remittance, list) else (remittance or {}).get("unstructured") or []
        assert [line for line in lines if line.strip()] == item.remittance[: len([x for x in lines if x.strip()])]
        for structured in (remittance or {}).get("structured") or [] if isinstance(remittance, dict) else []:
            reference = (structured.get("creditorReferenceInformation") or {}).get("reference")
            if reference and reference.strip():
                assert reference in item.remittance
    links = raw.get("_links") or {}
    href = (links.get("next") or {}).get("href")
    repeats_self = href == (links.get("self") or {}).get("href")  # the client stops there (woob's heuristic)
    assert (next_url is not None) == bool(href and href.strip() and not repeats_self)
    if next_url is not None:
        assert next_url == ORIGIN + href


def _check_beneficiaries(raw: Json, items: list[BeneficiaryItem]) -> None:
    beneficiaries = raw.get("beneficiaries") or []
    assert len(items) == len(beneficiaries)
    for beneficiary, item in zip(beneficiaries, items, strict=True):
        assert item.id == beneficiary.get("id")
        assert item.name == (beneficiary.get("creditor") or {}).get("name")
        assert item.iban == (beneficiary.get("creditorAccount") or {}).get("iban")
        assert item.bic == (beneficiary.get("creditorAgent") or {}).get("bicFi")
        assert item.is_trusted == beneficiary.get("isTrusted")


def _check_identity(raw: Json, identity: IdentityResponse) -> None:
    found = raw.get("identity") or {}
    assert (identity.full_name, identity.first_name, identity.last_name, identity.name_prefix) == (
        found.get("fullName"),
        found.get("firstName"),
        found.get("lastName"),
        found.get("namePrefix"),
    )


def read_through(stet_version: str, template: str, body: Json) -> None:
    """Serve ``body`` as the bank's answer to ``template`` and check the client + API models keep it whole."""
    bank = InProcessBank(answer=lambda _m, _u: (200, body))
    client = client_for(stet_version, bank)
    if template == "/accounts":
        _check_accounts(
            body, ListAccountsResponse.from_bank("13807", mapping.accounts(client.get_accounts(TOKEN, None)))
        )
    elif template.endswith("/balances"):
        balances = client.get_balances(TOKEN, ACCOUNT_ID, None).balances
        raw = body.get("balances") or []
        assert len(balances) == len(raw)
        for balance, stet in zip(raw, balances, strict=True):
            _check_balance(balance, BalanceItem.from_bank(mapping.balance(stet)))
    elif template.endswith("/transactions"):
        page = client.get_transactions_page(TOKEN, ACCOUNT_ID, psu=None)
        _check_transactions(
            body,
            [TransactionItem.from_bank(mapping.transaction(t, bank_code="13807")) for t in page.transactions],
            page.next_url,
        )
    elif template == "/trusted-beneficiaries":
        found = client.get_trusted_beneficiaries(TOKEN, None).beneficiaries
        _check_beneficiaries(body, [BeneficiaryItem.from_bank(mapping.beneficiary(b)) for b in found])
    elif template == "/end-user-identity":
        identity = client.get_end_user_identity(TOKEN, None)
        assert identity is not None
        _check_identity(body, IdentityResponse.from_bank(mapping.identity(identity)))
    else:  # pragma: no cover - every AIS GET is listed in READ_OPERATIONS
        raise AssertionError(template)


# The AIS reads the gateway makes; /owners and /overdrafts (1.5) are not called.
READ_OPERATIONS = (
    "/accounts",
    "/accounts/{accountResourceId}/balances",
    "/accounts/{accountResourceId}/transactions",
    "/trusted-beneficiaries",
    "/end-user-identity",
)
# Item examples of 1.4.0.47 (it has no whole-body examples), wrapped into the list body of their operation.
ITEM_EXAMPLES = {
    "AccountResource": ("/accounts", "accounts"),
    "BalanceResource": ("/accounts/{accountResourceId}/balances", "balances"),
    "Transaction": ("/accounts/{accountResourceId}/transactions", "transactions"),
    "Beneficiary": ("/trusted-beneficiaries", "beneficiaries"),
}
# Where a spec's example breaks its own schema: the messages it raises, and why it is still read.
_NO_SECONDS = "'2020-02-14T00:00+01:00' is not a 'date-time'"
EXAMPLE_ERRATA: dict[tuple[str, str], tuple[set[str], str]] = {
    ("1.5.0.43", "HalAccounts"): ({"'PERSO' is not of type 'object'"}, "workspace as a string; the schema's is {}"),
    # RFC 3339 wants seconds; BPCE's own dates are no stricter (2022-08-25T00:00:00+0200), so we read the day.
    ("1.5.0.43", "HalTransactions"): ({_NO_SECONDS}, "bookingDate without seconds"),
    ("1.5.0.43", "Transaction"): ({_NO_SECONDS}, "bookingDate without seconds"),
    ("1.5.0.43", "StructuredRemittanceInformation"): ({_NO_SECONDS}, "the Transaction example it is embedded in"),
}
# Not an erratum but worth knowing: 1.5's HalBeneficiaries example lists its items under "demoBeneficiaries", which
# the schema allows (extra member) and which is not a beneficiary list: it reads as no beneficiary.


def _examples() -> list[tuple[str, str, str, Json]]:
    cases = []
    for version in SOURCES:
        spec = Spec(load_extract(version))
        schemas = spec.document.get("definitions") or spec.document["components"]["schemas"]
        for template in READ_OPERATIONS:
            found = spec.operation("GET", template.replace("{accountResourceId}", ACCOUNT_ID))
            if found is None:
                continue
            name = spec.response_schema(found[0])["$ref"].rsplit("/", 1)[-1]
            cases += [(version, template, name, example) for example in spec.examples(found[0])]
        for name, (template, key) in ITEM_EXAMPLES.items():
            if "example" in schemas.get(name, {}):
                example = schemas[name]["example"]
                item = json.loads(example) if isinstance(example, str) else example
                cases.append((version, template, name, {key: [item], "_links": {"self": {"href": "/v1/x"}}}))
        if "StructuredRemittanceInformation" in schemas:
            structured = json.loads(schemas["StructuredRemittanceInformation"]["example"])
            unstructured = json.loads(schemas["RemittanceInformation"]["example"])
            transaction = json.loads(schemas["Transaction"]["example"])
            transaction["remittanceInformation"] = {**unstructured, "structured": [structured]}
            template = "/accounts/{accountResourceId}/transactions"
            body = {"transactions": [transaction], "_links": {"self": {"href": "/v1/x"}}}
            cases.append((version, template, "StructuredRemittanceInformation", body))
    return cases


EXAMPLES = _examples()


def test_every_spec_example_is_found():
    # 1.5 gives whole bodies for its five reads plus item examples; 1.4.0.47 gives item examples only
    assert {(v, n) for v, _t, n, _e in EXAMPLES} >= {
        ("1.4.0.47", "AccountResource"),
        ("1.4.0.47", "Transaction"),
        ("1.5.0.43", "HalAccounts"),
        ("1.5.0.43", "HalBalances"),
        ("1.5.0.43", "HalTransactions"),
        ("1.5.0.43", "HalBeneficiaries"),
        ("1.5.0.43", "HalEndUserIdentity"),
        ("1.5.0.43", "StructuredRemittanceInformation"),
    }


@pytest.mark.parametrize(("version", "template", "name", "example"), EXAMPLES, ids=[f"{c[0]}-{c[2]}" for c in EXAMPLES])
def test_spec_examples_go_through_without_loss(version, template, name, example):
    # Given one of the spec's examples (checked against its own schema, known errata aside)
    spec = Spec(load_extract(version))
    found = spec.operation("GET", template.replace("{accountResourceId}", ACCOUNT_ID))
    assert found is not None
    errors = {e.message for e in spec.validator(spec.response_schema(found[0])).iter_errors(example)}
    assert errors == EXAMPLE_ERRATA.get((version, name), (set(), ""))[0]

    # When it is the bank's answer / Then the client and the API models keep every figure, date, status and link
    read_through(version, template, example)


def _relative_links() -> st.SearchStrategy[Json]:
    # Links are relative references on the bank (BPCE sends them so): any path on the same origin.
    return st.fixed_dictionaries(
        {"href": st.from_regex(r"/v1/[a-z]{1,8}(\?page=[1-9])?", fullmatch=True)},
        optional={"templated": st.booleans()},
    )


def _generated_cases() -> list[tuple[str, str]]:
    return [
        (version, template)
        for version in SOURCES
        for template in READ_OPERATIONS
        if Spec(load_extract(version)).operation("GET", template.replace("{accountResourceId}", "a")) is not None
    ]


@pytest.mark.parametrize(("version", "template"), _generated_cases())
def test_schema_generated_responses_go_through_without_loss(version, template):
    spec = Spec(load_extract(version))
    operation: Operation = spec.operation("GET", template.replace("{accountResourceId}", "a"))[0]  # type: ignore[index]
    bodies = from_schema(spec, spec.response_schema(operation), overrides={"GenericLink": _relative_links()})

    @settings(max_examples=40, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies)
    def check(body: Json) -> None:
        assert spec.validator(spec.response_schema(operation)).is_valid(body)
        read_through(version, template, copy.deepcopy(body))

    check()


# ----------------------------------------------------------------------------------------------------------------
# The vendored extracts are the official files' AIS part
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not STET_REFERENCE.is_dir(), reason="shared/reference/stet is not beside the repository")
@pytest.mark.parametrize("version", list(SOURCES))
def test_the_vendored_extracts_match_the_official_files(version):
    # Regenerate with: python -m tests.stet_contract
    assert extract(load_reference(version)) == load_extract(version)
