"""BankClient against a real local mTLS HTTPS bank (trustme + pytest-httpserver) that verifies our signatures."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from aisp.errors import (
    BankAccessDeniedError,
    BankClientError,
    BankNotFoundError,
    BankNotImplementedError,
    BankProtocolError,
    BankRateLimitedError,
    BankTokenInvalidError,
    BankUnavailableError,
    ClientCredentialsRejectedError,
    ConfigurationError,
    ReauthRequiredError,
    UpstreamError,
)
from aisp.stet import BankClient, ConsentRequest, PsuContext
from tests.integration.conftest import API_PREFIX, BANK_CODE, CLIENT_ID, BankRecorder, FakeSleep

pytestmark = pytest.mark.integration

ClientFactory = Callable[..., BankClient]

PREFIX = f"/{BANK_CODE}"
TOKEN_PATH = f"{PREFIX}/stet/psd2/oauth/token"
REVOKE_PATH = f"{PREFIX}/stet/psd2/oauth/revoke"
API = f"{PREFIX}{API_PREFIX}"
ACCESS_TOKEN = "access-token-KXZyspFBZ1R6"
REDIRECT_URI = "https://myapp.example/oauth/callback?bank=13807"
PSU = PsuContext(ip_address="192.168.0.1", ip_port=51000, user_agent="Mozilla/5.0", accept_language="fr-FR")
ACCOUNT_ID = "038-CPT30019654051"
IBAN = "FR7613807008043001965405158"
BANK_TEXT = "Limite des appels par jour depassee (Erreur H6B-42) secret-ish bank text"

ACCOUNTS_BODY = {
    "_links": {"self": {"href": f"{API_PREFIX}/accounts"}},
    "accounts": [
        {
            "cashAccountType": "CACC",
            "accountId": {"iban": IBAN},
            "resourceId": ACCOUNT_ID,
            "name": "Compte perso",
            "currency": "EUR",
            "balances": [
                {"balanceType": "CLBD", "name": "Solde", "balanceAmount": {"amount": "4179.95", "currency": "EUR"}}
            ],
            "_links": {"transactions": {"href": f"{API_PREFIX}/accounts/{ACCOUNT_ID}/transactions"}},
        }
    ],
}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json;charset=UTF-8")


def always(response: Callable[[], Response]) -> Callable[[Request, int], Response]:
    return lambda _request, _index: response()


def tx(n: int) -> dict[str, Any]:
    return {
        "resourceId": str(n),
        "entryReference": str(n),
        "transactionAmount": {"amount": f"{n}.00", "currency": "EUR"},
        "creditDebitIndicator": "DBIT",
        "status": "BOOK",
        "bookingDate": "2026-09-02T00:00:00+0200",
        "remittanceInformation": {"unstructured": [f"LINE {n}"]},
    }


def page_body(n: int, *, next_href: Any = None, self_href: str | None = None, key: str = "next") -> dict[str, Any]:
    links: dict[str, Any] = {}
    if self_href is not None:
        links["self"] = {"href": self_href, "templated": True}
    if next_href is not None:
        links[key] = next_href if isinstance(next_href, dict) else {"href": next_href}
    return {"transactions": [tx(n)], "_links": links}


def assert_no_leak(exc: BaseException, *secrets: str) -> None:
    rendered = str(exc) + repr(getattr(exc, "details", {}))
    for secret in secrets:
        assert secret not in rendered


# ----------------------------------------------------------------------------------------------------------------
# OAuth2 token calls
# ----------------------------------------------------------------------------------------------------------------


def test_exchange_code_sends_form_without_scope_over_mtls(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory
) -> None:
    # Given a bank token endpoint answering like the 89C3 sandbox
    token_body = {
        "access_token": "AT-1",
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": "aisp offline_access",
        "refresh_token": "RT-1",
    }
    bank.expect_request(TOKEN_PATH, method="POST").respond_with_handler(
        recorder.wrap(always(lambda: json_response(token_body)))
    )
    client = make_client()

    # When the code is exchanged
    token = client.exchange_code("NnZx1hqHY2CLkCFjiTwhJeflgNnCrB", REDIRECT_URI)

    # Then the form is the 89C3 one (no scope, same redirect_uri, client_id), unsigned, and the tokens are parsed
    (seen,) = recorder.seen
    assert seen.form == {
        "grant_type": "authorization_code",
        "code": "NnZx1hqHY2CLkCFjiTwhJeflgNnCrB",
        "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID,
    }
    # The seed's token request: "Content-Type:application/x-www-form-urlencoded; charset=utf-8"
    assert seen.header("Content-Type") == "application/x-www-form-urlencoded; charset=utf-8"
    assert seen.header("Accept") == "application/json"
    assert seen.header("Signature") is None
    assert seen.header("Authorization") is None
    assert uuid.UUID(seen.header("X-Request-ID") or "").version == 4
    assert token.access_token.get_secret_value() == "AT-1"
    assert token.refresh_token is not None
    assert token.refresh_token.get_secret_value() == "RT-1"
    assert token.expires_in == 3600


def test_refresh_sends_refresh_grant_and_tolerates_missing_refresh_token(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory
) -> None:
    # Given a token endpoint that omits refresh_token on refresh
    bank.expect_request(TOKEN_PATH, method="POST").respond_with_handler(
        recorder.wrap(
            always(lambda: json_response({"access_token": "AT-2", "token_type": "Bearer", "expires_in": 3600}))
        )
    )

    # When refreshing
    token = make_client().refresh("RT-1")

    # Then the form carries the refresh grant without scope, and no refresh token comes back
    assert recorder.seen[0].form == {"grant_type": "refresh_token", "refresh_token": "RT-1", "client_id": CLIENT_ID}
    assert token.access_token.get_secret_value() == "AT-2"
    assert token.refresh_token is None


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"error": "invalid_grant", "error_description": "refresh token expired RT-1"}, ReauthRequiredError),
        (401, {"error": "invalid_token"}, ReauthRequiredError),
        (403, {"status": 403, "message": "Forbidden"}, ReauthRequiredError),
        (400, {"error": "invalid_client"}, ClientCredentialsRejectedError),
        (401, {"error": "invalid_client"}, ClientCredentialsRejectedError),
        (400, {"error": "unauthorized_client"}, ClientCredentialsRejectedError),
        (400, {"error": "invalid_scope"}, BankClientError),
        (429, {"error": "Too Many Requests", "message": BANK_TEXT}, BankRateLimitedError),
        (503, "<html>maintenance</html>", BankUnavailableError),
    ],
    ids=[
        "invalid_grant",
        "401",
        "403",
        "invalid_client",
        "invalid_client-401",
        "unauthorized_client",
        "400",
        "429",
        "503",
    ],
)
def test_refresh_error_mapping(
    bank: HTTPServer,
    recorder: BankRecorder,
    make_client: ClientFactory,
    fake_sleep: FakeSleep,
    status: int,
    body: Any,
    expected: type[UpstreamError],
) -> None:
    # Given a token endpoint that refuses the refresh
    def respond() -> Response:
        if isinstance(body, str):
            return Response(body, status=status, content_type="text/html")
        return json_response(body, status=status)

    bank.expect_request(TOKEN_PATH, method="POST").respond_with_handler(recorder.wrap(always(respond)))

    # When refreshing
    with pytest.raises(expected) as excinfo:
        make_client().refresh("RT-1")

    # Then the right error is raised, exactly once (POST is never retried), without bank text or tokens
    assert type(excinfo.value) is expected
    assert excinfo.value.status == status
    assert excinfo.value.bank_code == BANK_CODE
    assert excinfo.value.request_id == recorder.seen[0].header("X-Request-ID")
    assert len(recorder.seen) == 1
    assert fake_sleep.delays == []
    assert_no_leak(excinfo.value, "RT-1", "H6B", "maintenance", "expired")


def test_token_2xx_with_non_json_or_empty_body_is_protocol_error(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory
) -> None:
    # Given a token endpoint answering 200 with HTML, then 200 with nothing
    bodies = [Response("<html>login</html>", status=200, content_type="text/html"), Response("", status=200)]
    bank.expect_request(TOKEN_PATH, method="POST").respond_with_handler(recorder.wrap(lambda _r, i: bodies[i]))
    client = make_client()

    # When / Then both are protocol errors
    with pytest.raises(BankProtocolError):
        client.exchange_code("code", REDIRECT_URI)
    with pytest.raises(BankProtocolError) as excinfo:
        client.exchange_code("code", REDIRECT_URI)
    assert excinfo.value.status == 200


def test_revoke_posts_token_form(bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory) -> None:
    # Given a revoke endpoint answering 200 with no body
    bank.expect_request(REVOKE_PATH, method="POST").respond_with_handler(
        recorder.wrap(always(lambda: Response("", 200)))
    )

    # When revoking
    result = make_client().revoke("RT-1", token_type_hint="refresh_token")

    # Then the RFC 7009 form was sent, unsigned
    assert result is None
    assert recorder.seen[0].form == {"token": "RT-1", "client_id": CLIENT_ID, "token_type_hint": "refresh_token"}
    assert recorder.seen[0].header("Signature") is None


# ----------------------------------------------------------------------------------------------------------------
# AISP calls: signature, headers, PSU context
# ----------------------------------------------------------------------------------------------------------------


def test_get_accounts_signed_with_psu_headers(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory
) -> None:
    # Given the bank's /accounts
    bank.expect_request(f"{API}/accounts", method="GET").respond_with_handler(
        recorder.wrap(always(lambda: json_response(ACCOUNTS_BODY)))
    )

    # When the connected PSU lists accounts
    accounts = make_client().get_accounts(ACCESS_TOKEN, PSU)

    # Then the request was signed (verified server-side), covers the PSU headers and carries the bearer token
    (seen,) = recorder.seen
    assert seen.signature_error is None
    assert seen.key_id == CLIENT_ID
    assert seen.header("Authorization") == f"Bearer {ACCESS_TOKEN}"
    # STET's GETs produce application/hal+json only; BPCE answers application/json: both, HAL first
    assert seen.header("Accept") == "application/hal+json, application/json"
    assert seen.header("PSU-IP-Address") == "192.168.0.1"
    assert seen.header("PSU-IP-Port") == "51000"
    assert seen.header("PSU-User-Agent") == "Mozilla/5.0"
    assert seen.header("PSU-Accept-Language") == "fr-FR"
    signature = seen.header("Signature") or ""
    assert 'headers="(request-target) date digest x-request-id psu-ip-address psu-ip-port' in signature
    assert seen.header("Digest") == "SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    assert accounts.accounts[0].resource_id == ACCOUNT_ID
    assert accounts.accounts[0].balances[0].balance_amount.amount == Decimal("4179.95")


def test_batch_call_sends_no_psu_header(bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory) -> None:
    # Given the bank's /accounts
    bank.expect_request(f"{API}/accounts", method="GET").respond_with_handler(
        recorder.wrap(always(lambda: json_response(ACCOUNTS_BODY)))
    )

    # When a batch job (no PSU present) lists accounts
    make_client().get_accounts(ACCESS_TOKEN, None)

    # Then no PSU-* header was invented, and the signature still verifies
    (seen,) = recorder.seen
    assert [name for name in seen.headers if name.lower().startswith("psu-")] == []
    assert seen.signature_error is None
    assert 'headers="(request-target) date digest x-request-id"' in (seen.header("Signature") or "")


def test_each_call_has_a_fresh_request_id(bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory) -> None:
    # Given the bank's /accounts
    bank.expect_request(f"{API}/accounts", method="GET").respond_with_handler(
        recorder.wrap(always(lambda: json_response(ACCOUNTS_BODY)))
    )
    client = make_client()

    # When called three times
    for _ in range(3):
        client.get_accounts(ACCESS_TOKEN, None)

    # Then three distinct UUID4 request ids were sent
    ids = [seen.header("X-Request-ID") for seen in recorder.seen]
    assert len(set(ids)) == 3
    assert all(uuid.UUID(i or "").version == 4 for i in ids)


def test_put_consents_signed_body_and_201(bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory) -> None:
    # Given a /consents endpoint answering 201 with no body
    bank.expect_request(f"{API}/consents", method="PUT").respond_with_handler(
        recorder.wrap(always(lambda: Response("", status=201)))
    )
    consent = ConsentRequest(balances=[IBAN], transactions=[IBAN], trusted_beneficiaries=False, psu_identity=True)

    # When the consent is forwarded
    result = make_client().put_consents(ACCESS_TOKEN, consent, PSU)

    # Then the STET Access body was sent as JSON, with Digest and content-type covered by the verified signature
    (seen,) = recorder.seen
    assert result is None
    assert seen.signature_error is None
    assert json.loads(seen.body) == {
        "balances": [{"iban": IBAN}],
        "transactions": [{"iban": IBAN}],
        "trustedBeneficiaries": False,
        "psuIdentity": True,
    }
    assert seen.body == consent.to_json_bytes()
    assert seen.header("Content-Type") == "application/json"
    assert "content-type psu-ip-address" in (seen.header("Signature") or "")


def test_put_consents_accepts_200_with_empty_body(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory
) -> None:
    # Given a /consents endpoint answering 200 with an empty body (BPCE reality)
    bank.expect_request(f"{API}/consents", method="PUT").respond_with_handler(
        recorder.wrap(always(lambda: Response("", status=200)))
    )

    # When / Then it is a success
    assert make_client().put_consents(ACCESS_TOKEN, ConsentRequest(balances=[IBAN]), None) is None
    assert recorder.seen[0].signature_error is None


def test_put_is_never_retried(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory, fake_sleep: FakeSleep
) -> None:
    # Given a /consents endpoint that is unavailable
    bank.expect_request(f"{API}/consents", method="PUT").respond_with_handler(
        recorder.wrap(always(lambda: json_response({"status": 503, "message": "down"}, status=503)))
    )

    # When forwarding a consent
    with pytest.raises(BankUnavailableError) as excinfo:
        make_client().put_consents(ACCESS_TOKEN, ConsentRequest(balances=[IBAN]), PSU)

    # Then exactly one attempt was made, without backoff
    assert len(recorder.seen) == 1
    assert fake_sleep.delays == []
    assert excinfo.value.status == 503


def test_account_id_is_percent_encoded_and_dates_sent(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory
) -> None:
    # Given an account id with characters that must not split the path
    account_id = "123/card x"
    # (pytest-httpserver matches the decoded path; the raw target is asserted below)
    bank.expect_request(f"{API}/accounts/123/card x/transactions", method="GET").respond_with_handler(
        recorder.wrap(always(lambda: json_response(page_body(1))))
    )

    # When reading transactions with a date range
    page = make_client().get_transactions_page(
        ACCESS_TOKEN, account_id, psu=None, date_from=date(2026, 9, 1), date_to=date(2026, 10, 1)
    )

    # Then the id is one encoded path segment, the dates are STET date-times (the Paris midnight starting each day,
    # summer time here), and the signature covers the raw target
    (seen,) = recorder.seen
    path, _, query = seen.raw_uri.partition("?")
    assert path == f"{API}/accounts/123%2Fcard%20x/transactions"
    assert query == "dateFrom=2026-09-01T00:00:00%2B02:00&dateTo=2026-10-01T00:00:00%2B02:00"
    assert parse_qs(query) == {"dateFrom": ["2026-09-01T00:00:00+02:00"], "dateTo": ["2026-10-01T00:00:00+02:00"]}
    assert seen.signature_error is None
    assert page.transactions[0].booking_date == date(2026, 9, 2)
    assert page.next_url is None


def test_a_bank_that_wants_plain_dates_gets_them(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory
) -> None:
    # Given a bank whose registry entry says date_format "date"
    bank.expect_request(f"{API}/accounts/{ACCOUNT_ID}/transactions", method="GET").respond_with_handler(
        recorder.wrap(always(lambda: json_response(page_body(1))))
    )

    # When reading a winter range
    make_client(date_format="date").get_transactions_page(
        ACCESS_TOKEN, ACCOUNT_ID, psu=None, date_from=date(2026, 1, 5), date_to=date(2026, 2, 1)
    )

    # Then the filters are YYYY-MM-DD
    assert recorder.seen[0].raw_uri.partition("?")[2] == "dateFrom=2026-01-05&dateTo=2026-02-01"


def test_put_consents_sends_the_access_body_of_the_banks_stet_version(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory
) -> None:
    # Given a STET 1.5 bank and a 1.4.2 bank answering PUT /consents
    bank.expect_request(f"{API}/consents", method="PUT").respond_with_handler(
        recorder.wrap(always(lambda: Response(status=201)))
    )
    consent = ConsentRequest(balances=[IBAN], transactions=[IBAN], psu_identity=True)

    # When the consent is sent to each
    make_client(stet_version="1.5.0.43").put_consents(ACCESS_TOKEN, consent, PSU)
    make_client(stet_version="1.4.2.17").put_consents(ACCESS_TOKEN, consent, PSU)

    # Then 1.5 gets its required "owners" (empty: the gateway never asks for the owners' identities), 1.4.2 not
    v15, v142 = (json.loads(seen.body) for seen in recorder.seen)
    assert v15 == {
        "balances": [{"iban": IBAN}],
        "transactions": [{"iban": IBAN}],
        "trustedBeneficiaries": False,
        "psuIdentity": True,
        "owners": [],
    }
    assert "owners" not in v142 and v142["balances"] == [{"iban": IBAN}]
    assert [seen.signature_error for seen in recorder.seen] == [None, None]


@pytest.mark.parametrize(
    ("status", "body"),
    [(501, {"status": 501, "message": "NIMP"}), (501, ""), (400, {"status": 400, "message": "NIMP"})],
    ids=["501-nimp", "501-empty", "400-nimp"],
)
def test_not_implemented_is_final(
    bank: HTTPServer,
    recorder: BankRecorder,
    make_client: ClientFactory,
    fake_sleep: FakeSleep,
    status: int,
    body: Any,
) -> None:
    # Given a bank that says it cannot provide trusted beneficiaries (STET 501, or BPCE's NIMP code)
    bank.expect_request(f"{API}/trusted-beneficiaries", method="GET").respond_with_handler(
        recorder.wrap(always(lambda: json_response(body, status=status) if body else Response(status=status)))
    )

    # When asked
    with pytest.raises(BankNotImplementedError) as excinfo:
        make_client().get_trusted_beneficiaries(ACCESS_TOKEN, PSU)

    # Then the answer is final: one call, no backoff (a 501 is not "unavailable, retry later")
    assert excinfo.value.status == status
    assert len(recorder.seen) == 1
    assert fake_sleep.delays == []


def test_balances_beneficiaries_identity(bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory) -> None:
    # Given balances, a 204 beneficiaries list and a 1.4.2 identity
    bank.expect_request(f"{API}/accounts/{ACCOUNT_ID}/balances", method="GET").respond_with_handler(
        recorder.wrap(
            always(
                lambda: json_response(
                    {
                        "balances": [
                            {"balanceType": "XPCD", "name": "x", "balanceAmount": {"amount": 1.5, "currency": "EUR"}}
                        ]
                    }
                )
            )
        )
    )
    bank.expect_request(f"{API}/trusted-beneficiaries", method="GET").respond_with_handler(
        recorder.wrap(always(lambda: Response(status=204)))
    )
    bank.expect_request(f"{API}/end-user-identity", method="GET").respond_with_handler(
        recorder.wrap(always(lambda: json_response({"connectedPsu": "MALLOW MARC", "connectedPsuFirstName": "MARC"})))
    )
    client = make_client()

    # When reading each
    balances = client.get_balances(ACCESS_TOKEN, ACCOUNT_ID, PSU)
    beneficiaries = client.get_trusted_beneficiaries(ACCESS_TOKEN, PSU)
    identity = client.get_end_user_identity(ACCESS_TOKEN, PSU)

    # Then each is parsed and every request verified
    assert balances.balances[0].balance_amount.amount == Decimal("1.5")
    assert beneficiaries.beneficiaries == []
    assert identity is not None
    assert (identity.full_name, identity.first_name) == ("MALLOW MARC", "MARC")
    assert [s.signature_error for s in recorder.seen] == [None, None, None]


def test_identity_204_is_none(bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory) -> None:
    # Given an identity endpoint with nothing to say
    bank.expect_request(f"{API}/end-user-identity", method="GET").respond_with_handler(
        recorder.wrap(always(lambda: Response(status=204)))
    )

    # When / Then
    assert make_client().get_end_user_identity(ACCESS_TOKEN, None) is None


# ----------------------------------------------------------------------------------------------------------------
# Error mapping on AISP calls
# ----------------------------------------------------------------------------------------------------------------


def test_naac_404_on_accounts_is_an_empty_list(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory
) -> None:
    # Given /accounts answering 404 NAAC (no eligible account)
    body = {"timestamp": "2021-05-27 14:07:11.000000000", "status": 404, "error": "Not Found", "message": "NAAC"}
    bank.expect_request(f"{API}/accounts", method="GET").respond_with_handler(
        recorder.wrap(always(lambda: json_response(body, status=404)))
    )

    # When / Then it is not an error
    accounts = make_client().get_accounts(ACCESS_TOKEN, PSU)
    assert accounts.accounts == []
    assert len(recorder.seen) == 1


def test_other_404_on_accounts_is_not_found(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory
) -> None:
    # Given /accounts answering a plain 404
    bank.expect_request(f"{API}/accounts", method="GET").respond_with_handler(
        recorder.wrap(always(lambda: json_response({"status": 404, "message": "Not Found"}, status=404)))
    )

    # When / Then
    with pytest.raises(BankNotFoundError) as excinfo:
        make_client().get_accounts(ACCESS_TOKEN, PSU)
    assert excinfo.value.status == 404


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "retry_after"),
    [
        (404, {"status": 404, "message": "NAAC"}, None, BankNotFoundError, None),
        (429, {"error": "Too Many Requests", "message": BANK_TEXT}, {"Retry-After": "30"}, BankRateLimitedError, 30),
        (
            429,
            {"error": "Too Many Requests", "message": BANK_TEXT},
            {"Retry-After": "later"},
            BankRateLimitedError,
            None,
        ),
        (403, {"status": 403, "message": "TMRQ"}, None, BankRateLimitedError, None),
        (
            403,
            {"status": 403, "message": "consent missing for FR7613807008043001965405158"},
            None,
            BankAccessDeniedError,
            None,
        ),
        (401, {"status": 401, "message": "token expired"}, None, BankTokenInvalidError, None),
        (400, {"status": 400, "message": "Invalid status value"}, None, BankClientError, None),
        (405, "", None, BankClientError, None),
        (406, "<html>Not Acceptable</html>", None, BankClientError, None),
        (400, {"error": "invalid_grant"}, None, BankClientError, None),
    ],
    ids=[
        "404-naac-balances",
        "429",
        "429-bad-retry-after",
        "403-tmrq",
        "403",
        "401",
        "400",
        "405-empty",
        "406-html",
        "400-grant-aisp",
    ],
)
def test_aisp_error_mapping(
    bank: HTTPServer,
    recorder: BankRecorder,
    make_client: ClientFactory,
    fake_sleep: FakeSleep,
    status: int,
    body: Any,
    headers: dict[str, str] | None,
    expected: type[UpstreamError],
    retry_after: int | None,
) -> None:
    # Given /balances answering an error
    def respond() -> Response:
        if isinstance(body, str):
            return Response(body, status=status, headers=headers, content_type="text/html")
        return json_response(body, status=status, headers=headers)

    bank.expect_request(f"{API}/accounts/{ACCOUNT_ID}/balances", method="GET").respond_with_handler(
        recorder.wrap(always(respond))
    )

    # When reading balances
    with pytest.raises(expected) as excinfo:
        make_client().get_balances(ACCESS_TOKEN, ACCOUNT_ID, PSU)

    # Then the exact error type, no retry on 4xx, constant message without bank text/IBAN/token
    error = excinfo.value
    assert type(error) is expected
    assert error.status == status
    assert error.request_id == recorder.seen[-1].header("X-Request-ID")
    assert error.details["operation"] == "get_balances"
    assert len(recorder.seen) == 1
    assert fake_sleep.delays == []
    if isinstance(error, BankRateLimitedError):
        assert error.retry_after == retry_after
    assert_no_leak(error, "H6B", "FR7613807008043001965405158", ACCESS_TOKEN, "expired", "Invalid status", "127.0.0.1")


@pytest.mark.parametrize(
    "respond",
    [
        lambda: Response("<html>ok</html>", status=200, content_type="text/html"),
        lambda: json_response({"balances": "not a list"}),
        lambda: json_response([1, 2, 3]),
        lambda: json_response({"balances": [{"balanceType": "CLBD"}]}),
    ],
    ids=["html", "wrong-type", "top-level-list", "missing-amount"],
)
def test_2xx_with_bad_body_is_protocol_error(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory, respond: Callable[[], Response]
) -> None:
    # Given /balances answering 200 with a body we cannot understand
    bank.expect_request(f"{API}/accounts/{ACCOUNT_ID}/balances", method="GET").respond_with_handler(
        recorder.wrap(always(respond))
    )

    # When / Then
    with pytest.raises(BankProtocolError) as excinfo:
        make_client().get_balances(ACCESS_TOKEN, ACCOUNT_ID, None)
    assert excinfo.value.status == 200
    assert excinfo.value.details["where"] == "get_balances"


def test_redirect_is_not_followed(bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory) -> None:
    # Given /accounts redirecting elsewhere
    bank.expect_request(f"{API}/accounts", method="GET").respond_with_handler(
        recorder.wrap(always(lambda: Response("", status=302, headers={"Location": "https://evil.example/x"})))
    )

    # When / Then the client refuses instead of following
    with pytest.raises(BankProtocolError) as excinfo:
        make_client().get_accounts(ACCESS_TOKEN, None)
    assert excinfo.value.status == 302
    assert len(recorder.seen) == 1


# ----------------------------------------------------------------------------------------------------------------
# Retries
# ----------------------------------------------------------------------------------------------------------------


def test_get_retried_on_503_then_succeeds(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory, fake_sleep: FakeSleep
) -> None:
    # Given /accounts failing once with 503, then answering
    def respond(_request: Request, index: int) -> Response:
        if index == 0:
            return json_response({"status": 503, "message": "Service Unavailable"}, status=503)
        return json_response(ACCOUNTS_BODY)

    bank.expect_request(f"{API}/accounts", method="GET").respond_with_handler(recorder.wrap(respond))

    # When listing accounts
    accounts = make_client().get_accounts(ACCESS_TOKEN, PSU)

    # Then one backoff happened (first delay in [0.25, 0.5]) and each attempt was freshly signed with its own id
    assert len(accounts.accounts) == 1
    assert len(recorder.seen) == 2
    assert len(fake_sleep.delays) == 1
    assert 0.25 <= fake_sleep.delays[0] <= 0.5
    assert recorder.seen[0].header("X-Request-ID") != recorder.seen[1].header("X-Request-ID")
    assert [s.signature_error for s in recorder.seen] == [None, None]


def test_get_retries_exhausted_with_exponential_backoff(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory, fake_sleep: FakeSleep
) -> None:
    # Given /accounts always failing with 500 INTE
    bank.expect_request(f"{API}/accounts", method="GET").respond_with_handler(
        recorder.wrap(always(lambda: json_response({"status": 500, "message": "INTE"}, status=500)))
    )

    # When listing accounts with max_get_retries=2, the user present
    with pytest.raises(BankUnavailableError) as excinfo:
        make_client().get_accounts(ACCESS_TOKEN, PSU)

    # Then three attempts, two growing delays, and the last request id in the error
    assert len(recorder.seen) == 3
    assert len(fake_sleep.delays) == 2
    assert 0.25 <= fake_sleep.delays[0] <= 0.5
    assert 0.5 <= fake_sleep.delays[1] <= 1.0
    assert excinfo.value.request_id == recorder.seen[-1].header("X-Request-ID")
    assert excinfo.value.details["bank_error_code"] == "INTE"


def test_timeout_is_unavailable(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory, fake_sleep: FakeSleep
) -> None:
    # Given a bank slower than the client's read timeout
    def slow(_request: Request, _index: int) -> Response:
        time.sleep(0.6)
        return json_response(ACCOUNTS_BODY)

    bank.expect_request(f"{API}/accounts", method="GET").respond_with_handler(recorder.wrap(slow))
    client = make_client(timeout=(2.0, 0.2), max_get_retries=1)

    # When listing accounts, the user present
    with pytest.raises(BankUnavailableError) as excinfo:
        client.get_accounts(ACCESS_TOKEN, PSU)

    # Then it is a retried timeout, wrapped (requests exception as cause, never escaping)
    assert excinfo.value.details["failure"] == "timeout"
    assert excinfo.value.status is None
    assert isinstance(excinfo.value.__cause__, requests.Timeout)
    assert len(fake_sleep.delays) == 1


def test_client_without_certificate_is_refused(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory, fake_sleep: FakeSleep
) -> None:
    # Given a client that presents no client certificate to the mTLS bank
    bank.expect_request(f"{API}/accounts", method="GET").respond_with_handler(
        recorder.wrap(always(lambda: json_response(ACCOUNTS_BODY)))
    )
    client = make_client(cert=None)

    # When / Then the TLS failure becomes BankUnavailableError and the request never reached the bank
    with pytest.raises(BankUnavailableError) as excinfo:
        client.get_accounts(ACCESS_TOKEN, None)
    assert excinfo.value.details["failure"] in {"tls", "connection"}
    assert isinstance(excinfo.value.__cause__, requests.RequestException)
    assert recorder.seen == []


def test_untrusted_server_certificate_is_refused(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory
) -> None:
    # Given a client trusting only the system store (not our test CA)
    bank.expect_request(f"{API}/accounts", method="GET").respond_with_handler(
        recorder.wrap(always(lambda: json_response(ACCOUNTS_BODY)))
    )
    client = make_client(verify=True)

    # When / Then
    with pytest.raises(BankUnavailableError) as excinfo:
        client.get_accounts(ACCESS_TOKEN, None)
    assert excinfo.value.details["failure"] == "tls"
    assert recorder.seen == []


def test_connection_refused_is_unavailable_after_retries(
    make_client: ClientFactory, fake_sleep: FakeSleep, bank: HTTPServer
) -> None:
    # Given a port where nothing listens
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    client = make_client(base_url=f"https://127.0.0.1:{free_port}/{BANK_CODE}")

    # When / Then: retried even unattended (nothing reached the bank), and said so
    with pytest.raises(BankUnavailableError) as excinfo:
        client.get_accounts(ACCESS_TOKEN, None)
    assert excinfo.value.details["failure"] == "connection"
    assert excinfo.value.details["sent"] is False
    assert len(fake_sleep.delays) == 2


def test_an_unattended_first_page_is_never_retried_after_it_reached_the_bank(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory, fake_sleep: FakeSleep
) -> None:
    # Given a bank answering 503 to everything: without PSU-IP-Address, BPCE counts every first-page GET against the
    # day's 4, failed or not, so a retry would spend another unit of the quota
    bank.expect_request(f"{API}/accounts", method="GET").respond_with_handler(
        recorder.wrap(always(lambda: json_response({"status": 503, "message": "Service Unavailable"}, status=503)))
    )
    bank.expect_request(f"{API}/accounts/{ACCOUNT_ID}/balances", method="GET").respond_with_handler(
        recorder.wrap(always(lambda: json_response({"status": 500, "message": "INTE"}, status=500)))
    )

    # When each is read once without the user
    with pytest.raises(BankUnavailableError) as accounts:
        make_client().get_accounts(ACCESS_TOKEN, None)
    with pytest.raises(BankUnavailableError) as balances:
        make_client().get_balances(ACCESS_TOKEN, ACCOUNT_ID, None)

    # Then one attempt each, no backoff, and the error does not claim the request never left
    assert [seen.raw_uri for seen in recorder.seen] == [f"{API}/accounts", f"{API}/accounts/{ACCOUNT_ID}/balances"]
    assert fake_sleep.delays == []
    assert "sent" not in accounts.value.details and "sent" not in balances.value.details
    assert all(seen.header("PSU-IP-Address") is None for seen in recorder.seen)


def test_an_unattended_next_page_is_retried_since_pages_are_free(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory, fake_sleep: FakeSleep, origin: str
) -> None:
    # Given a next page failing once with 503
    def respond(_request: Request, index: int) -> Response:
        if index == 0:
            return json_response({"status": 503, "message": "Service Unavailable"}, status=503)
        return json_response({"transactions": [], "_links": {"self": {"href": f"{TX_PATH}?page=2"}}})

    bank.expect_request(TX_PATH, method="GET").respond_with_handler(recorder.wrap(respond))
    # When the page a next link gave is read without the user
    page = make_client().get_transactions_page(ACCESS_TOKEN, ACCOUNT_ID, psu=None, page_url=f"{origin}{TX_PATH}?page=2")

    # Then it was retried once ("hors pagination": a page is not counted)
    assert page.transactions == [] and len(recorder.seen) == 2 and len(fake_sleep.delays) == 1


# ----------------------------------------------------------------------------------------------------------------
# Pagination
# ----------------------------------------------------------------------------------------------------------------

TX_PATH = f"{API}/accounts/{ACCOUNT_ID}/transactions"


def test_pagination_relative_next_then_empty_href(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory
) -> None:
    # Given BPCE-style pages: relative next (with the sandbox path prefix), last page with next.href == ""
    def respond(request: Request, _index: int) -> Response:
        page = request.args.get("page")
        if page is None:
            return json_response(page_body(1, next_href=f"{TX_PATH}?dateFrom=2026-09-01&page=2"))
        if page == "2":
            return json_response(page_body(2, next_href=f"{TX_PATH}?dateFrom=2026-09-01&page=3", key="next"))
        return json_response(page_body(3, next_href="", self_href=f"{TX_PATH}?page=3"))

    bank.expect_request(TX_PATH, method="GET").respond_with_handler(recorder.wrap(respond))

    # When iterating all pages
    pages = list(make_client().iter_transaction_pages(ACCESS_TOKEN, ACCOUNT_ID, psu=None, date_from=date(2026, 9, 1)))

    # Then three pages in order, each request signed over its exact target, and the last next_url is None
    assert [p.transactions[0].resource_id for p in pages] == ["1", "2", "3"]
    assert pages[0].next_url == f"https://127.0.0.1:{bank.port}{TX_PATH}?dateFrom=2026-09-01&page=2"
    assert pages[-1].next_url is None
    assert [s.raw_uri for s in recorder.seen] == [
        f"{TX_PATH}?dateFrom=2026-09-01T00:00:00%2B02:00",
        f"{TX_PATH}?dateFrom=2026-09-01&page=2",
        f"{TX_PATH}?dateFrom=2026-09-01&page=3",
    ]
    assert [s.signature_error for s in recorder.seen] == [None, None, None]


def test_pagination_absolute_same_host_next_and_previous_key(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory, origin: str
) -> None:
    # Given a first page whose next is absolute on the same origin and which uses the "previous" key
    def respond(request: Request, _index: int) -> Response:
        if request.args.get("page") == "2":
            body = page_body(2, next_href={"href": "   "})
            body["_links"]["previous"] = {"href": f"{TX_PATH}?page=1"}
            return json_response(body)
        return json_response(page_body(1, next_href=f"{origin}{TX_PATH}?page=2"))

    bank.expect_request(TX_PATH, method="GET").respond_with_handler(recorder.wrap(respond))

    # When iterating
    pages = list(make_client().iter_transaction_pages(ACCESS_TOKEN, ACCOUNT_ID, psu=PSU))

    # Then both pages are read; a whitespace href ends pagination; "previous" is read as prev
    assert len(pages) == 2
    assert pages[1].links is not None
    assert pages[1].links.prev is not None
    assert pages[1].links.prev.href == f"{TX_PATH}?page=1"
    assert pages[1].next_url is None
    assert all(s.header("PSU-IP-Address") == "192.168.0.1" for s in recorder.seen)


@pytest.mark.parametrize(
    "foreign",
    [
        "https://evil.example/13807/stet/psd2/v1.4.2/accounts/x/transactions?page=2",
        "http://127.0.0.1:{port}/13807/stet/psd2/v1.4.2/accounts/x/transactions?page=2",
        "https://127.0.0.1:1/13807/stet/psd2/v1.4.2/accounts/x/transactions?page=2",
        "//evil.example/steal",
    ],
    ids=["other-host", "other-scheme", "other-port", "scheme-relative"],
)
def test_pagination_foreign_next_is_rejected(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory, foreign: str
) -> None:
    # Given a page whose next leaves the bank origin
    next_href = foreign.format(port=bank.port)
    bank.expect_request(TX_PATH, method="GET").respond_with_handler(
        recorder.wrap(always(lambda: json_response(page_body(1, next_href=next_href))))
    )
    client = make_client()

    # When fetching the page / iterating
    with pytest.raises(BankProtocolError) as single:
        client.get_transactions_page(ACCESS_TOKEN, ACCOUNT_ID, psu=None)
    with pytest.raises(BankProtocolError):
        list(client.iter_transaction_pages(ACCESS_TOKEN, ACCOUNT_ID, psu=None))

    # Then the bank is never followed elsewhere, and the error does not echo the URL
    assert len(recorder.seen) == 2
    assert all(s.raw_uri.startswith(TX_PATH) for s in recorder.seen)
    assert_no_leak(single.value, "evil", "page=2")


def test_foreign_page_url_is_rejected_before_sending(make_client: ClientFactory, bank: HTTPServer) -> None:
    # Given / When a caller passes a page URL on another host
    with pytest.raises(BankProtocolError):
        make_client().get_transactions_page(ACCESS_TOKEN, ACCOUNT_ID, psu=None, page_url="https://evil.example/x")

    # Then nothing was sent anywhere
    assert bank.log == []


def test_pagination_stops_when_next_equals_self(
    bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory, origin: str
) -> None:
    # Given a page whose next is its own self (absolute vs relative forms)
    self_href = f"{TX_PATH}?page=1"
    bank.expect_request(TX_PATH, method="GET").respond_with_handler(
        recorder.wrap(
            always(lambda: json_response(page_body(1, next_href=f"{origin}{self_href}", self_href=self_href)))
        )
    )

    # When iterating
    pages = list(make_client().iter_transaction_pages(ACCESS_TOKEN, ACCOUNT_ID, psu=None))

    # Then one page only
    assert len(pages) == 1
    assert pages[0].next_url is None
    assert len(recorder.seen) == 1


def test_pagination_stops_on_a_cycle(bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory) -> None:
    # Given page 2 pointing back to the first page URL
    def respond(request: Request, _index: int) -> Response:
        if request.args.get("page") == "2":
            return json_response(page_body(2, next_href=TX_PATH))
        return json_response(page_body(1, next_href=f"{TX_PATH}?page=2"))

    bank.expect_request(TX_PATH, method="GET").respond_with_handler(recorder.wrap(respond))

    # When iterating
    pages = list(make_client().iter_transaction_pages(ACCESS_TOKEN, ACCOUNT_ID, psu=None))

    # Then each URL is fetched once
    assert [p.transactions[0].resource_id for p in pages] == ["1", "2"]
    assert len(recorder.seen) == 2


def test_pagination_204_is_an_empty_page(bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory) -> None:
    # Given transactions answering 204
    bank.expect_request(TX_PATH, method="GET").respond_with_handler(recorder.wrap(always(lambda: Response(status=204))))

    # When iterating
    pages = list(make_client().iter_transaction_pages(ACCESS_TOKEN, ACCOUNT_ID, psu=None))

    # Then a single empty page
    assert len(pages) == 1
    assert pages[0].transactions == []
    assert pages[0].next_url is None


def test_pagination_max_pages_guard(bank: HTTPServer, recorder: BankRecorder, make_client: ClientFactory) -> None:
    # Given a bank that always has a new next page
    def respond(request: Request, _index: int) -> Response:
        n = int(request.args.get("page", "1"))
        return json_response(page_body(n, next_href=f"{TX_PATH}?page={n + 1}"))

    bank.expect_request(TX_PATH, method="GET").respond_with_handler(recorder.wrap(respond))
    pages: list[Any] = []

    # When iterating with a limit of 3 pages
    with pytest.raises(BankProtocolError) as excinfo:
        for page in make_client().iter_transaction_pages(ACCESS_TOKEN, ACCOUNT_ID, psu=None, max_pages=3):
            pages.append(page)

    # Then 3 pages were yielded, no 4th request was sent, and the guard is reported
    assert len(pages) == 3
    assert len(recorder.seen) == 3
    assert excinfo.value.details["max_pages"] == 3


# ----------------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"base_url": "http://127.0.0.1:8443/13807"},
        {"base_url": "127.0.0.1:8443"},
        {"base_url": "https://127.0.0.1:8443/13807?x=1"},
        {"verify": False},
        {"client_id": ""},
        {"max_get_retries": -1},
    ],
    ids=["http", "no-scheme", "query", "verify-off", "no-client-id", "negative-retries"],
)
def test_bad_configuration_is_refused(make_client: ClientFactory, overrides: dict[str, Any]) -> None:
    # Given / When / Then
    with pytest.raises(ConfigurationError):
        make_client(**overrides)
