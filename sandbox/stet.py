"""STET JSON bodies, in the two shapes the sandbox serves.

* ``/stet/psd2/v1`` follows STET 1.4.0.47 as the 89C3 guide prints it: GET /accounts is the guide's body (top-level
  ``_links`` ``{"last": {}, "self": {}, "first": {}}``, consented accounts linked by ``{"templated": false}`` without
  ``href``, ``connectedPsu`` last), ``remittanceInformation`` as an array of strings, dates as ``YYYY-MM-DD``, no
  ``next`` on the last page.
* ``/stet/psd2/v1.4.2`` follows STET 1.4.2 as BPCE serves it: ``accountId.currency``, identity only through
  GET /end-user-identity, ``remittanceInformation`` as ``{"unstructured": [...]}``, ``bookingDate`` as
  ``YYYY-MM-DDT00:00:00+0100`` (offset without colon, as captured from BPCE), ``expectedBookingDate`` on pending
  items and ``"next": {"href": ""}`` on the last page.

Both: amounts are strings; pending (``PDNG``) items carry no ``bookingDate``; links are relative references
(``/{bank_code}/stet/psd2/...``) that resolve against the sandbox origin; paging links carry ``page=N`` and
both ``prev`` (STET) and ``previous`` (BPCE).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlencode

from sandbox.banks import Bank
from sandbox.clock import paris
from sandbox.history import Entry
from sandbox.personas import Account, Balance, Beneficiary, Consent, Persona, ReferenceDay

JsonObject = dict[str, Any]


class ApiVersion(StrEnum):
    """The AISP API versions served under ``/stet/psd2/{version}``."""

    V1 = "v1"
    V1_4_2 = "v1.4.2"


def api_base(bank: Bank, version: ApiVersion) -> str:
    """Relative base of the AISP API of one bank and version."""
    return f"/{bank.code}/stet/psd2/{version.value}"


def link(href: str) -> JsonObject:
    """A HAL ``GenericLink``."""
    return {"href": href}


def account_href(base: str, account: Account, resource: str) -> str:
    """``{base}/accounts/{resourceId}/{resource}``, the resource id percent-encoded."""
    return f"{base}/accounts/{quote(account.resource_id, safe='')}/{resource}"


def error_model(status: int, error: str, message: str, path: str, now: float) -> JsonObject:
    """A STET ``ErrorModel`` (RFC 3339 UTC timestamp with milliseconds)."""
    stamp = datetime.fromtimestamp(now, UTC)
    return {
        "timestamp": f"{stamp:%Y-%m-%dT%H:%M:%S}.{stamp.microsecond // 1000:03d}Z",
        "status": status,
        "error": error,
        "message": message[:140],
        "path": path[:140],
    }


# --- accounts and balances -----------------------------------------------------------------------------------


def _reference_date(reference: ReferenceDay, today: date) -> date | None:
    if reference is ReferenceDay.TODAY:
        return today
    if reference is ReferenceDay.YESTERDAY:
        return today - timedelta(days=1)
    return None


def balance_json(balance: Balance, currency: str, today: date) -> JsonObject:
    """One ``BalanceResource``."""
    reference = _reference_date(balance.reference, today)
    name = balance.name.format(date=f"{reference or today:%d/%m/%Y}")
    body: JsonObject = {
        "balanceType": balance.balance_type,
        "name": name,
        "balanceAmount": {"amount": balance.amount, "currency": currency},
    }
    if reference is not None:
        body["referenceDate"] = reference.isoformat()
    return body


def _account_id(account: Account, bank: Bank, version: ApiVersion) -> JsonObject:
    if account.iban is not None:
        identification: JsonObject = {"iban": account.iban}
    else:
        identification = {"other": {"identification": account.key, "schemeName": "CPAN", "issuer": bank.bic}}
    if version is ApiVersion.V1_4_2:
        identification["currency"] = account.currency
    return identification


def account_json(
    account: Account, *, bank: Bank, consent: Consent, version: ApiVersion, base: str, today: date
) -> JsonObject:
    """One ``AccountResource``, enriched only for what the PSU consented to (BPCE mixed model)."""
    key = account.key
    links: JsonObject = {}
    body: JsonObject = {
        "cashAccountType": account.cash_account_type,
        "accountId": _account_id(account, bank, version),
        "resourceId": account.resource_id,
        "product": account.product,
    }
    seed_links = version is ApiVersion.V1  # the guide's links carry no href: clients build the URL from resourceId
    if key in consent.balances:
        body["balances"] = [balance_json(balance, account.currency, today) for balance in account.balances]
        links["balances"] = _account_link(base, account, "balances", seed=seed_links)
    if key in consent.transactions:
        links["transactions"] = _account_link(base, account, "transactions", seed=seed_links)
    body["_links"] = links
    body["usage"] = account.usage
    body["psuStatus"] = account.psu_status
    body["name"] = account.name
    body["bicFi"] = bank.bic
    body["currency"] = account.currency
    body["details"] = account.details
    if account.linked_account is not None:
        body["linkedAccount"] = account.linked_account
    return body


def _account_link(base: str, account: Account, resource: str, *, seed: bool) -> JsonObject:
    if seed:
        return {"templated": False}
    return {"href": account_href(base, account, resource), "templated": False}


def accounts_json(persona: Persona, *, bank: Bank, consent: Consent, version: ApiVersion, today: date) -> JsonObject:
    """``HalAccounts`` for GET /accounts (on ``/v1``, the guide's links: no ``href``, no beneficiaries link)."""
    base = api_base(bank, version)
    if version is ApiVersion.V1:
        links: JsonObject = {"last": {}, "self": {}, "first": {}}
    else:
        links = {"self": link(f"{base}/accounts"), "first": link(f"{base}/accounts"), "last": link(f"{base}/accounts")}
        if consent.psu_identity and bank.identity_supported:
            links["endUserIdentity"] = link(f"{base}/end-user-identity")
        if consent.trusted_beneficiaries and bank.beneficiaries_supported:
            links["beneficiaries"] = link(f"{base}/trusted-beneficiaries")
    body: JsonObject = {
        "_links": links,
        "accounts": [
            account_json(account, bank=bank, consent=consent, version=version, base=base, today=today)
            for account in persona.accounts
        ],
    }
    if version is ApiVersion.V1 and consent.psu_identity:
        body["connectedPsu"] = persona.connected_psu
    return body


def balances_json(account: Account, *, bank: Bank, consent: Consent, version: ApiVersion, today: date) -> JsonObject:
    """``HalBalances`` for GET /accounts/{id}/balances."""
    base = api_base(bank, version)
    links: JsonObject = {
        "self": link(account_href(base, account, "balances")),
        "parent-list": link(f"{base}/accounts"),
    }
    if account.key in consent.transactions:
        links["transactions"] = link(account_href(base, account, "transactions"))
    return {
        "balances": [balance_json(balance, account.currency, today) for balance in account.balances],
        "_links": links,
    }


# --- transactions --------------------------------------------------------------------------------------------


def _midnight(day: date) -> str:
    """``YYYY-MM-DDT00:00:00+0100``: BPCE's bookingDate form (Europe/Paris offset, no colon)."""
    return datetime.combine(day, time.min, paris()).strftime("%Y-%m-%dT%H:%M:%S%z")


def transaction_json(entry: Entry, *, version: ApiVersion, currency: str) -> JsonObject:
    """One ``Transaction``."""
    pending = entry.pending
    body: JsonObject = {
        "resourceId": entry.entry_reference,
        "entryReference": entry.entry_reference,
        "transactionAmount": {"amount": entry.amount, "currency": currency},
        "creditDebitIndicator": entry.credit_debit,
        "status": "PDNG" if pending else "BOOK",
    }
    if version is ApiVersion.V1:
        if not pending:
            body["bookingDate"] = entry.imputation_date.isoformat()
    elif pending:
        body["expectedBookingDate"] = _midnight(entry.imputation_date)
    else:
        body["bookingDate"] = _midnight(entry.imputation_date)
    body["valueDate"] = entry.value_date.isoformat()
    body["transactionDate"] = entry.transaction_date.isoformat()
    lines = list(entry.remittance)
    body["remittanceInformation"] = lines if version is ApiVersion.V1 else {"unstructured": lines}
    return body


def _page_href(href: str, params: Mapping[str, str], page: int) -> str:
    return f"{href}?{urlencode({**params, 'page': str(page)})}"


def transactions_json(
    entries: Iterable[Entry],
    *,
    account: Account,
    bank: Bank,
    consent: Consent,
    version: ApiVersion,
    params: Mapping[str, str],
    page: int,
    last_page: int,
    paged: bool,
) -> JsonObject:
    """``HalTransactions`` for one page of GET /accounts/{id}/transactions.

    ``params`` are the normalised filters (``dateFrom``/``dateTo`` as dates) repeated in every paging link.
    """
    base = api_base(bank, version)
    href = account_href(base, account, "transactions")
    links: JsonObject = {}
    if paged:
        links["self"] = link(_page_href(href, params, page))
        links["first"] = link(_page_href(href, params, 1))
        links["last"] = link(_page_href(href, params, last_page))
        if page < last_page:
            links["next"] = link(_page_href(href, params, page + 1))
        elif version is ApiVersion.V1_4_2:
            links["next"] = link("")
        if page > 1:
            links["prev"] = link(_page_href(href, params, page - 1))
            links["previous"] = link(_page_href(href, params, page - 1))
    else:
        links["self"] = link(f"{href}?{urlencode(params)}" if params else href)
    links["parent-list"] = link(f"{base}/accounts")
    if account.key in consent.balances:
        links["balances"] = link(account_href(base, account, "balances"))
    return {
        "transactions": [transaction_json(entry, version=version, currency=account.currency) for entry in entries],
        "_links": links,
    }


# --- identity and beneficiaries ------------------------------------------------------------------------------


def identity_json(persona: Persona, *, bank: Bank, version: ApiVersion) -> JsonObject:
    """``HalEndUserIdentity`` in the STET 1.4.2 shape (``connectedPsu*`` fields)."""
    base = api_base(bank, version)
    body: JsonObject = {"connectedPsu": persona.connected_psu}
    if persona.name_prefix is not None:
        body["connectedPsuNamePrefix"] = persona.name_prefix
    if persona.first_name is not None:
        body["connectedPsuFirstName"] = persona.first_name
    body["connectedPsuLastName"] = persona.last_name
    body["_links"] = {"self": link(f"{base}/end-user-identity"), "parent-list": link(f"{base}/accounts")}
    return body


def _beneficiary_json(beneficiary: Beneficiary) -> JsonObject:
    return {
        "id": beneficiary.beneficiary_id,
        "isTrusted": True,
        "creditorAgent": {"bicFi": beneficiary.bic},
        "creditor": {"name": beneficiary.name},
        "creditorAccount": {"iban": beneficiary.iban},
    }


def beneficiaries_json(persona: Persona, *, bank: Bank, version: ApiVersion) -> JsonObject:
    """``HalBeneficiaries`` for GET /trusted-beneficiaries."""
    base = api_base(bank, version)
    return {
        "beneficiaries": [_beneficiary_json(beneficiary) for beneficiary in persona.beneficiaries],
        "_links": {"self": link(f"{base}/trusted-beneficiaries"), "parent-list": link(f"{base}/accounts")},
    }
