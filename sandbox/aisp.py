"""The AISP endpoints of a bank under ``/stet/psd2/v1`` and ``/stet/psd2/v1.4.2``.

Every call must carry ``X-Request-ID`` (at most 70 characters, echoed back), a current Bearer access token issued
to the TPP of the client certificate, a ``Digest`` of the body and a ``Signature`` verified with the TPP's
registered QSealC key; otherwise 401 with a STET ``ErrorModel``. Then, in order: the daily quota of unattended
calls (no ``PSU-IP-Address``: 4 a day per client × PSU × account × method, page requests excluded; 429), and the
BPCE mixed consent model (403 for what was not consented).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from sandbox.clock import paris
from sandbox.core import SandboxCore
from sandbox.history import account_history
from sandbox.oauth import authenticate
from sandbox.personas import Account, Consent, Persona
from sandbox.signature import SignatureRejected, check_signature
from sandbox.stet import (
    ApiVersion,
    accounts_json,
    balances_json,
    beneficiaries_json,
    error_model,
    identity_json,
    transactions_json,
)
from sandbox.store import BankStore, Grant, normalise_account_key
from sandbox.web import Request, Response, json_response

MAX_REQUEST_ID_LENGTH = 70
QUOTA_MESSAGE = "Limite des appels par jour dépassée (Erreur H6B-0429)"
NOT_CONSENTED = "Access to this resource was not consented by the PSU"
NO_ACCOUNT_KEY = "-"
_FIRST_PAGES = ("", "1", "first")
_CONSENT_LISTS = ("balances", "transactions")
_CONSENT_FLAGS = ("trustedBeneficiaries", "psuIdentity")


class ApiError(Exception):
    """An ErrorModel answer."""

    def __init__(self, status: int, message: str, *, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """An authenticated AISP call."""

    store: BankStore
    version: ApiVersion
    request: Request
    grant: Grant
    persona: Persona
    consent: Consent
    account: Account | None
    today: date


_Handler = Callable[["AispEndpoints", Call], Response]


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    operation: str
    handler: _Handler
    needs_account: bool = False


def error_response(
    core: SandboxCore, status: int, message: str, path: str, *, headers: list[tuple[str, str]] | None = None
) -> Response:
    """A STET ErrorModel response."""
    reason = HTTPStatus(status).phrase
    return json_response(status, error_model(status, reason, message, path, core.clock.now()), headers=headers)


def parse_date_param(value: str) -> date:
    """``dateFrom``/``dateTo`` as a Europe/Paris calendar day; accepts a date or an ISO 8601 date-time."""
    text = value.strip().replace(" ", "+")  # a raw "+01:00" in a query string arrives as a space
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is not None:
        return parsed.astimezone(paris()).date()
    return parsed.date()


class AispEndpoints:
    """The account information API, shared by every bank (each call names its bank's store)."""

    def __init__(self, core: SandboxCore) -> None:
        self._core = core

    # --- entry point -------------------------------------------------------------------------------------------

    def handle(self, store: BankStore, version: ApiVersion, resource: tuple[str, ...], request: Request) -> Response:
        """Authenticate, count and answer one AISP call; ``resource`` is the path after the version."""
        request_id = request.header("x-request-id")
        echo = [("X-Request-ID", request_id)] if request_id and len(request_id) <= MAX_REQUEST_ID_LENGTH else []
        try:
            route, account_id = self._route(resource, request.method)
            call = self._authenticate(store, version, request, route, account_id)
            self._count(call, route)
            response = route.handler(self, call)
        except ApiError as exc:
            return error_response(self._core, exc.status, exc.message, request.path, headers=[*exc.headers, *echo])
        response.headers.extend(echo)
        return response

    @staticmethod
    def _route(resource: tuple[str, ...], method: str) -> tuple[_Route, str | None]:
        account_id: str | None = None
        key = resource
        if len(resource) == 3 and resource[0] == "accounts":  # noqa: PLR2004 - accounts/{id}/{sub}
            key, account_id = ("accounts", "{id}", resource[2]), unquote(resource[1])
        route = _ROUTES.get(key)
        if route is None:
            raise ApiError(HTTPStatus.NOT_FOUND, "Resource not found")
        if route.method != method:
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, "Method not allowed", headers=[("Allow", route.method)])
        return route, account_id

    def _authenticate(
        self, store: BankStore, version: ApiVersion, request: Request, route: _Route, account_id: str | None
    ) -> Call:
        request_id = request.header("x-request-id")
        if not request_id:
            raise ApiError(HTTPStatus.UNAUTHORIZED, "Missing request header 'X-Request-ID'")
        if len(request_id) > MAX_REQUEST_ID_LENGTH:
            raise ApiError(HTTPStatus.UNAUTHORIZED, "X-Request-ID is longer than 70 characters")
        client_id = request.client_id or ""
        grant = authenticate(self._core, store, request.header("authorization"), client_id)
        if grant is None:
            raise ApiError(
                HTTPStatus.UNAUTHORIZED,
                "Invalid, expired or revoked access token",
                headers=[("WWW-Authenticate", 'Bearer error="invalid_token"')],
            )
        try:
            check_signature(
                self._core.tpp, method=request.method, url=request.url, headers=request.headers, body=request.body
            )
        except SignatureRejected as exc:
            raise ApiError(HTTPStatus.UNAUTHORIZED, exc.message) from None
        persona = store.personas[grant.psu_id]
        account: Account | None = None
        if route.needs_account:
            account = store.accounts[persona.identifier].get(account_id or "")
            if account is None:
                raise ApiError(HTTPStatus.NOT_FOUND, "Unknown account")
        with store.lock:
            consent = store.consent_for(grant.client_id, persona)
        return Call(
            store=store,
            version=version,
            request=request,
            grant=grant,
            persona=persona,
            consent=consent,
            account=account,
            today=self._core.clock.today(),
        )

    def _count(self, call: Call, route: _Route) -> None:
        """Apply the daily quota of unattended calls (no ``PSU-IP-Address``; page requests are free)."""
        request = call.request
        if route.method != "GET" or request.header("psu-ip-address"):
            return
        if request.query.get("page", "") not in _FIRST_PAGES:
            return
        account_key = call.account.key if call.account is not None else NO_ACCOUNT_KEY
        key = (call.grant.client_id, call.persona.identifier, account_key, route.operation)
        with call.store.lock:
            allowed = call.store.quota.take(call.today, key, self._core.settings.daily_quota)
        if not allowed:
            raise ApiError(HTTPStatus.TOO_MANY_REQUESTS, QUOTA_MESSAGE)

    # --- endpoints ---------------------------------------------------------------------------------------------

    def _accounts(self, call: Call) -> Response:
        if not call.persona.accounts:
            raise ApiError(HTTPStatus.NOT_FOUND, "NAAC")
        body = accounts_json(
            call.persona, bank=call.store.bank, consent=call.consent, version=call.version, today=call.today
        )
        return json_response(HTTPStatus.OK, body)

    def _consents(self, call: Call) -> Response:
        consent = parse_consent(call.request.body, call.store, call.persona)
        with call.store.lock:
            call.store.consents[(call.grant.client_id, call.persona.identifier)] = consent
        return Response(HTTPStatus.CREATED)

    def _balances(self, call: Call) -> Response:
        account = _required(call.account)
        if account.key not in call.consent.balances:
            raise ApiError(HTTPStatus.FORBIDDEN, NOT_CONSENTED)
        body = balances_json(
            account, bank=call.store.bank, consent=call.consent, version=call.version, today=call.today
        )
        return json_response(HTTPStatus.OK, body)

    def _transactions(self, call: Call) -> Response:
        account = _required(call.account)
        if account.key not in call.consent.transactions:
            raise ApiError(HTTPStatus.FORBIDDEN, NOT_CONSENTED)
        query = call.request.query
        try:
            date_from = parse_date_param(query["dateFrom"]) if query.get("dateFrom") else None
            date_to = parse_date_param(query["dateTo"]) if query.get("dateTo") else None
        except ValueError:
            raise ApiError(HTTPStatus.BAD_REQUEST, "dateFrom and dateTo must be ISO 8601 dates") from None
        if date_from is not None and date_to is not None and date_from > date_to:
            raise ApiError(HTTPStatus.BAD_REQUEST, "dateFrom must not be after dateTo")
        entries = [
            entry
            for entry in account_history(account.resource_id, account.profile, call.today)
            if (date_from is None or entry.imputation_date >= date_from)
            and (date_to is None or entry.imputation_date < date_to)
        ]
        params = {
            name: value.isoformat()
            for name, value in (("dateFrom", date_from), ("dateTo", date_to))
            if value is not None
        }
        bank = call.store.bank
        settings = self._core.settings
        size = settings.page_size if bank.paged else settings.unpaged_max_results
        last_page = max(1, math.ceil(len(entries) / size))
        page = _page_number(query.get("page", ""), last_page) if bank.paged else 1
        body = transactions_json(
            entries[(page - 1) * size : page * size],
            account=account,
            bank=bank,
            consent=call.consent,
            version=call.version,
            params=params,
            page=page,
            last_page=last_page,
            paged=bank.paged,
        )
        return json_response(HTTPStatus.OK, body)

    def _beneficiaries(self, call: Call) -> Response:
        if not call.store.bank.beneficiaries_supported:
            raise ApiError(HTTPStatus.NOT_IMPLEMENTED, "NIMP")
        if not call.consent.trusted_beneficiaries:
            raise ApiError(HTTPStatus.FORBIDDEN, NOT_CONSENTED)
        if not call.persona.beneficiaries:
            return Response(HTTPStatus.NO_CONTENT)
        body = beneficiaries_json(call.persona, bank=call.store.bank, version=call.version)
        return json_response(HTTPStatus.OK, body)

    def _identity(self, call: Call) -> Response:
        if not call.store.bank.identity_supported:
            raise ApiError(HTTPStatus.NOT_IMPLEMENTED, "NIMP")
        if not call.consent.psu_identity:
            raise ApiError(HTTPStatus.FORBIDDEN, NOT_CONSENTED)
        return json_response(HTTPStatus.OK, identity_json(call.persona, bank=call.store.bank, version=call.version))


def _required(account: Account | None) -> Account:
    if account is None:  # pragma: no cover - routes with needs_account always resolve one
        raise ApiError(HTTPStatus.NOT_FOUND, "Unknown account")
    return account


def _page_number(value: str, last_page: int) -> int:
    if value in _FIRST_PAGES:
        return 1
    if value == "last":
        return last_page
    if not value.isdigit() or not 1 <= int(value) <= last_page:
        raise ApiError(HTTPStatus.BAD_REQUEST, "Invalid page")
    return int(value)


def _consented_keys(items: Any, field: str, owned: dict[str, Account]) -> frozenset[str]:
    if not isinstance(items, list):
        raise ApiError(HTTPStatus.BAD_REQUEST, f"'{field}' must be a list of account identifications")
    keys: set[str] = set()
    for item in items:
        raw = _identification(item)
        if raw is None:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"'{field}' items need an 'iban' or 'other.identification'")
        account = owned.get(normalise_account_key(raw))
        if account is None:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"An account in '{field}' does not belong to the PSU")
        keys.add(account.key)
    return frozenset(keys)


def _identification(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    iban = item.get("iban")
    if isinstance(iban, str) and iban.strip():
        return iban
    other = item.get("other")
    if isinstance(other, dict) and isinstance(other.get("identification"), str):
        return str(other["identification"])
    return None


def parse_consent(body: bytes, store: BankStore, persona: Persona) -> Consent:
    """Validate a PUT /consents body (STET ``Access``) against the PSU's accounts."""
    try:
        data = json.loads(body or b"null")
    except ValueError:
        raise ApiError(HTTPStatus.BAD_REQUEST, "Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(HTTPStatus.BAD_REQUEST, "Request body must be a STET Access object")
    missing = [name for name in (*_CONSENT_LISTS, *_CONSENT_FLAGS) if name not in data]
    if missing:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"Missing field(s): {', '.join(missing)}")
    if not all(isinstance(data[flag], bool) for flag in _CONSENT_FLAGS):
        raise ApiError(HTTPStatus.BAD_REQUEST, "'trustedBeneficiaries' and 'psuIdentity' must be booleans")
    owned = store.accounts_by_key[persona.identifier]
    return Consent(
        balances=_consented_keys(data["balances"], "balances", owned),
        transactions=_consented_keys(data["transactions"], "transactions", owned),
        psu_identity=data["psuIdentity"],
        trusted_beneficiaries=data["trustedBeneficiaries"],
    )


_ROUTES: dict[tuple[str, ...], _Route] = {
    ("accounts",): _Route("GET", "accounts", AispEndpoints._accounts),
    ("consents",): _Route("PUT", "consents", AispEndpoints._consents),
    ("accounts", "{id}", "balances"): _Route("GET", "balances", AispEndpoints._balances, needs_account=True),
    ("accounts", "{id}", "transactions"): _Route(
        "GET", "transactions", AispEndpoints._transactions, needs_account=True
    ),
    ("trusted-beneficiaries",): _Route("GET", "trusted-beneficiaries", AispEndpoints._beneficiaries),
    ("trustedBeneficiaries",): _Route("GET", "trusted-beneficiaries", AispEndpoints._beneficiaries),
    ("end-user-identity",): _Route("GET", "end-user-identity", AispEndpoints._identity),
    ("endUserIdentity",): _Route("GET", "end-user-identity", AispEndpoints._identity),
}
