"""Bad input through the real API path (issue #8): hand-written cases next to the schemathesis fuzzing
(``tests/integration/test_openapi_fuzz.py``).

Every case is one HTTP request to the local stack (the template's HTTP API with its JWT authorizer, the functions,
moto, the offline sandbox over mTLS), as a user connected to 13807 as Marc with a consent to everything. Tables:
oversized bodies, malformed JSON and wrong content types, invalid IBANs, unicode (emoji, RTL override, NUL, a lone
surrogate, combining and full-width characters, zero-width space) in every string of every body, path, query and
copied header, huge or non-numeric ``limit``, reversed dates, forged/truncated/foreign cursors, unknown banks, and
JWTs the authorizer must refuse on every protected route of docs/openapi.json (missing, expired, wrong audience or
issuer, bad signature, foreign key, ``alg: none``...).

Each answer must be the documented one: a problem+json 4xx with its ``code`` and a ``detail`` or field errors naming
what is wrong; API Gateway's own ``{"message": ...}`` where the request never reaches a function (authorizer, body
over 10 MB); the callback's static page for a link that matches nothing. Never a 5xx, never a token echoed back,
never an IBAN the request sent echoed in an error. Counted in the reliability summary as ``bad-input``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from string import Template
from typing import Any, Final
from urllib.parse import quote, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from local.jwt import LocalIssuer, b64url, encode
from local.stack import RunningStack
from tests.e2e.test_journey import TIMEOUT
from tests.reliability.stack_helpers import (
    BANK,
    DOCS,
    MARC_ACCOUNTS,
    MARC_IBANS,
    App,
    connect,
    consent_to_everything,
    documented_routes,
    local_stack,
    problem,
    raw_session,
    send,
)
from tests.reliability.tally import record

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SUITE: Final = "bad-input"
USER: Final = "bad-input"
OTHER_USER: Final = "bad-input-other"
STRANGER: Final = "bad-input-stranger"  # a user without any connection
ACCOUNT: Final = MARC_ACCOUNTS[0]
UNKNOWN_BANK: Final = "99999"
JSON: Final = "application/json"
MB: Final = 1024 * 1024
MIN_IBAN: Final = 15
# Unicode appended to valid values (sent as JSON escapes in bodies, as UTF-8 percent-encoding in URLs and as raw
# UTF-8 bytes in headers; the lone surrogate as its WTF-8 bytes where it cannot be UTF-8).
UNICODE: Final = {
    "emoji": "\U0001f600",
    "rtl-override": "\u202e",
    "nul": "\x00",
    "lone-surrogate": "\ud800",
    "combining": "e\u0301",
    "fullwidth": "\uff11",
    "zero-width": "\u200b",
}
VALID_CONSENT: Final = {"balances": [], "transactions": [], "psu_identity": False, "trusted_beneficiaries": False}
NO_BODY: Final[Any] = object()


@dataclass(frozen=True)
class Case:
    """One request and the answer the API documents for it.

    ``target`` is the path and query, already percent-encoded; ``$cursor``, ``$other_cursor`` and ``$api`` are
    filled in at run time (in bodies too). ``answer`` says who answers: ``problem`` (a function's problem+json with
    ``code``), ``gateway`` (API Gateway's own ``{"message": code}``), ``page`` (the callback's static page), ``ok``.
    """

    id: str
    method: str
    target: str
    status: int
    code: str | None = None
    field: str | None = None
    detail: str | None = None
    answer: str = "problem"
    body: Any = NO_BODY
    raw: bytes | None = None
    content_type: str | None = JSON
    headers: tuple[tuple[str, str | bytes], ...] = ()
    token: str = "valid"
    declared_length: int | None = None

    def payload(self, values: dict[str, str]) -> bytes | None:
        if self.raw is not None:
            return self.raw
        if self.body is NO_BODY:
            return None
        return Template(json.dumps(self.body)).safe_substitute(values).encode("utf-8")

    def sent_ibans(self) -> set[str]:
        """The IBANs of the body, normalised (spaces out, upper case), and Marc's: none may come back in an error."""
        lists = [self.body.get("balances"), self.body.get("transactions")] if isinstance(self.body, dict) else []
        values = [value for values in lists if isinstance(values, list) for value in values]
        sent = {"".join(value.split()).upper() for value in values if isinstance(value, str)}
        return {iban for iban in sent if len(iban) >= MIN_IBAN} | set(MARC_IBANS)


def pct(value: str) -> str:
    """``value`` as one percent-encoded URL component (a lone surrogate as its WTF-8 bytes)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def wtf8(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def bad_request(case_id: str, method: str, target: str, *, field: str | None = None, **kwargs: Any) -> Case:
    return Case(case_id, method, target, 400, "validation_error", field=field, **kwargs)


CONNECTIONS = "/v1/connections"
CONSENT = f"/v1/connections/{BANK}/consent"
ACCOUNTS = f"/v1/connections/{BANK}/accounts"
TRANSACTIONS = f"/v1/connections/{BANK}/accounts/{ACCOUNT}/transactions"
# Every route taking a bank code, with its method and the body it needs.
BANK_ROUTES: Final = (
    ("GET", "/v1/connections/{bank}/accounts", NO_BODY),
    ("GET", "/v1/connections/{bank}/accounts/" + ACCOUNT + "/balances", NO_BODY),
    ("GET", "/v1/connections/{bank}/accounts/" + ACCOUNT + "/transactions", NO_BODY),
    ("GET", "/v1/connections/{bank}/identity", NO_BODY),
    ("GET", "/v1/connections/{bank}/trusted-beneficiaries", NO_BODY),
    ("PUT", "/v1/connections/{bank}/consent", VALID_CONSENT),
    ("DELETE", "/v1/connections/{bank}", NO_BODY),
)


def body_cases() -> list[Case]:
    """Oversized, malformed, mistyped and wrongly labelled bodies."""
    huge_url = "$api/" + "a" * (3 * MB // 2)
    # Never a valid 13807 request body here: it would restart the user's connection.
    return [
        bad_request(
            "post/1.5MB-return-url",
            "POST",
            CONNECTIONS,
            field="return_url",
            body={"bank_code": BANK, "return_url": huge_url},
        ),
        bad_request(
            "post/1.5MB-bank-code",
            "POST",
            CONNECTIONS,
            field="bank_code",
            body={"bank_code": "1" * (3 * MB // 2), "return_url": "$api/"},
        ),
        bad_request(
            "put/1.5MB-iban-list",
            "PUT",
            CONSENT,
            field="balances",
            body={**VALID_CONSENT, "balances": [MARC_IBANS[0]] * 55_000},
        ),
        bad_request(
            "put/1.5MB-iban",
            "PUT",
            CONSENT,
            field="balances",
            body={**VALID_CONSENT, "balances": ["FR76" + "1" * (3 * MB // 2)]},
        ),
        Case(
            "post/11MB-over-api-gateway-limit",
            "POST",
            CONNECTIONS,
            413,
            "Request Entity Too Large",
            answer="gateway",
            declared_length=11 * MB,
        ),
        bad_request(
            "post/nested-100k-deep",
            "POST",
            CONNECTIONS,
            field="body",
            detail="not readable JSON",
            raw=b"[" * 100_000 + b"]" * 100_000,
        ),
        bad_request(
            "put/nested-100k-deep",
            "PUT",
            CONSENT,
            field="body",
            detail="not readable JSON",
            raw=b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        ),
        bad_request(
            "put/5000-digit-integer",
            "PUT",
            CONSENT,
            field="body",
            detail="not readable JSON",
            raw=b'{"psu_identity": ' + b"9" * 5000 + b"}",
        ),
        bad_request("post/truncated-json", "POST", CONNECTIONS, field="body", raw=b'{"bank_code": '),
        bad_request("post/trailing-comma", "POST", CONNECTIONS, field="body", raw=b'{"bank_code": "13807",}'),
        bad_request("post/single-quotes", "POST", CONNECTIONS, field="body", raw=b"{'bank_code': '13807'}"),
        bad_request("post/utf8-bom", "POST", CONNECTIONS, field="body", raw=b'\xef\xbb\xbf{"bank_code": "13807"}'),
        bad_request(
            "post/not-utf8", "POST", CONNECTIONS, field="body", detail="not UTF-8", raw=b'{"bank_code": "\xff\xfe"}'
        ),
        bad_request("post/empty", "POST", CONNECTIONS, field="body", raw=b""),
        bad_request("post/null", "POST", CONNECTIONS, field="body", raw=b"null"),
        bad_request("post/array", "POST", CONNECTIONS, field="body", raw=b"[]"),
        bad_request("post/string", "POST", CONNECTIONS, field="body", raw=b'"13807"'),
        bad_request("put/empty", "PUT", CONSENT, field="body", raw=b""),
        bad_request(
            "put/nan-boolean",
            "PUT",
            CONSENT,
            field="psu_identity",
            raw=b'{"balances": [], "transactions": [], "psu_identity": NaN, "trusted_beneficiaries": false}',
        ),
        bad_request(
            "put/missing-fields",
            "PUT",
            CONSENT,
            field="trusted_beneficiaries",
            body={"balances": [], "transactions": [], "psu_identity": True},
        ),
        bad_request("put/null-list", "PUT", CONSENT, field="balances", body={**VALID_CONSENT, "balances": None}),
        bad_request(
            "put/iban-number",
            "PUT",
            CONSENT,
            field="balances",
            body={**VALID_CONSENT, "balances": [7613807008043001965405158]},
        ),
        bad_request(
            "put/boolean-string", "PUT", CONSENT, field="psu_identity", body={**VALID_CONSENT, "psu_identity": "maybe"}
        ),
        bad_request(
            "put/extra-user-id", "PUT", CONSENT, field="user_id", body={**VALID_CONSENT, "user_id": "someone-else"}
        ),
        bad_request(
            "post/extra-user-id",
            "POST",
            CONNECTIONS,
            field="user_id",
            body={"bank_code": BANK, "return_url": "$api/", "user_id": "x"},
        ),
        bad_request("post/missing-return-url", "POST", CONNECTIONS, field="return_url", body={"bank_code": BANK}),
        bad_request(
            "post/javascript-return-url",
            "POST",
            CONNECTIONS,
            field="return_url",
            body={"bank_code": BANK, "return_url": "javascript:alert(1)"},
        ),
        bad_request(
            "post/foreign-return-url",
            "POST",
            CONNECTIONS,
            field="return_url",
            body={"bank_code": BANK, "return_url": "https://evil.example/"},
        ),
        bad_request(
            "post/dot-segment-return-url",
            "POST",
            CONNECTIONS,
            field="return_url",
            body={"bank_code": BANK, "return_url": "$api/%2e%2e/x"},
        ),
        bad_request(
            "post/text-plain",
            "POST",
            CONNECTIONS,
            field="body",
            detail="application/json",
            content_type="text/plain",
            body={"bank_code": UNKNOWN_BANK, "return_url": "$api/"},
        ),
        bad_request(
            "put/application-xml",
            "PUT",
            CONSENT,
            field="body",
            detail="application/json",
            content_type="application/xml",
            raw=b"<consent/>",
        ),
        bad_request(
            "put/multipart-no-boundary",
            "PUT",
            CONSENT,
            field="body",
            content_type="multipart/form-data",
            raw=b"--x\r\n",
        ),
        bad_request(
            "post/form-urlencoded",
            "POST",
            CONNECTIONS,
            field="bank_code",
            content_type="application/x-www-form-urlencoded",
            raw=b"bank_code=1380&return_url=x",
        ),
        bad_request(
            "put/json-latin1",
            "PUT",
            CONSENT,
            field="body",
            content_type="application/json; charset=latin-1",
            raw='{"balances": ["é"]}'.encode("latin-1"),
        ),
        Case(
            "post/unknown-bank",
            "POST",
            CONNECTIONS,
            404,
            "bank_not_found",
            detail="unknown bank code",
            body={"bank_code": UNKNOWN_BANK, "return_url": "$api/"},
        ),
        Case(
            "post/duplicate-keys-last-wins",
            "POST",
            CONNECTIONS,
            404,
            "bank_not_found",
            raw=b'{"bank_code": "13807", "bank_code": "99999", "return_url": "x"}',
        ),
        bad_request(
            "post/short-bank-code",
            "POST",
            CONNECTIONS,
            field="bank_code",
            body={"bank_code": "1380", "return_url": "$api/"},
        ),
        bad_request(
            "post/bank-code-number",
            "POST",
            CONNECTIONS,
            field="bank_code",
            body={"bank_code": 13807, "return_url": "$api/"},
        ),
    ]


def iban_cases() -> list[Case]:
    """IBANs against the API's rules: format, the country's registry length and mod-97 checked before the bank is
    called; spaces and lower case allowed (normalised); whether the account is the user's is the bank's answer."""

    def consent(case_id: str, iban: str, status: int = 400, **kwargs: Any) -> Case:
        body = {"balances": [iban], "transactions": [iban], "psu_identity": True, "trusted_beneficiaries": True}
        code = "validation_error" if status == 400 else None  # noqa: PLR2004
        return Case(case_id, "PUT", CONSENT, status, code, answer="problem" if code else "ok", body=body, **kwargs)

    marc = MARC_IBANS[0]
    spaced = " ".join(marc[i : i + 4] for i in range(0, len(marc), 4))
    return [
        consent("iban/bad-check-digits", marc[:-1] + "9", field="balances"),
        consent("iban/check-digits-00", marc[:2] + "00" + marc[4:], field="balances"),
        consent("iban/one-digit-short", marc[:-1], field="balances"),
        consent("iban/one-digit-long", marc + "0", field="balances"),
        consent("iban/letter-in-bban", marc[:10] + "O" + marc[11:], field="balances"),
        consent("iban/unknown-country", "XX" + marc[2:], field="balances"),
        consent("iban/too-short-for-schema", "FR76", field="balances"),
        consent("iban/separators", marc[:4] + "-" + marc[4:], field="balances"),
        # Valid checksums, not Marc's: the bank refuses, our answer says so without naming the IBAN.
        consent("iban/valid-german", "DE89370400440532013000", field="balances", detail="bank refused"),
        consent("iban/valid-french-other-bank", "FR7610207002210402123450128", field="balances", detail="bank refused"),
        # The documented normalisation: spaces (every 4 characters, tabs) and lower case are accepted.
        consent("iban/spaces-every-4-accepted", spaced, status=200),
        consent("iban/lower-case-accepted", marc.lower(), status=200),
        consent("iban/tab-and-lower-accepted", "\t" + spaced.lower() + " ", status=200),
    ]


def unicode_cases() -> list[Case]:
    """Unicode in every string of every body, path parameter, query parameter and header the API reads."""
    cases: list[Case] = []
    for name, text in UNICODE.items():
        cases += [
            bad_request(
                f"unicode/{name}/body.bank_code",
                "POST",
                CONNECTIONS,
                field="bank_code",
                body={"bank_code": BANK + text, "return_url": "$api/"},
            ),
            bad_request(
                f"unicode/{name}/body.return_url",
                "POST",
                CONNECTIONS,
                field="return_url",
                body={"bank_code": BANK, "return_url": "$api/" + text},
            ),
            bad_request(
                f"unicode/{name}/body.balances",
                "PUT",
                CONSENT,
                field="balances",
                body={**VALID_CONSENT, "balances": [MARC_IBANS[0] + text]},
            ),
            bad_request(
                f"unicode/{name}/body.transactions",
                "PUT",
                CONSENT,
                field="transactions",
                body={**VALID_CONSENT, "transactions": [text + MARC_IBANS[1]]},
            ),
            bad_request(
                f"unicode/{name}/body.psu_identity",
                "PUT",
                CONSENT,
                field="psu_identity",
                body={**VALID_CONSENT, "psu_identity": text},
            ),
            bad_request(
                f"unicode/{name}/body.trusted_beneficiaries",
                "PUT",
                CONSENT,
                field="trusted_beneficiaries",
                body={**VALID_CONSENT, "trusted_beneficiaries": "true" + text},
            ),
            bad_request(
                f"unicode/{name}/header.idempotency-key",
                "PUT",
                CONSENT,
                field="idempotency-key",
                body=VALID_CONSENT,
                headers=(("Idempotency-Key", wtf8("key-" + text)),),
            ),
            bad_request(
                f"unicode/{name}/path.account_id/balances",
                "GET",
                f"{ACCOUNTS}/{pct(ACCOUNT + text)}/balances",
                field="account_id",
            ),
            bad_request(
                f"unicode/{name}/path.account_id/transactions",
                "GET",
                f"{ACCOUNTS}/{pct(text)}/transactions",
                field="account_id",
            ),
            bad_request(
                f"unicode/{name}/query.date_from",
                "GET",
                f"{TRANSACTIONS}?date_from={pct('2025-01-01' + text)}",
                field="date_from",
            ),
            bad_request(
                f"unicode/{name}/query.date_to",
                "GET",
                f"{TRANSACTIONS}?date_to={pct(text + '2025-01-01')}",
                field="date_to",
            ),
            bad_request(
                f"unicode/{name}/query.limit", "GET", f"{TRANSACTIONS}?limit={pct('10' + text)}", field="limit"
            ),
            bad_request(f"unicode/{name}/query.all", "GET", f"{TRANSACTIONS}?all={pct('true' + text)}", field="all"),
            bad_request(
                f"unicode/{name}/query.cursor",
                "GET",
                f"{TRANSACTIONS}?cursor=$cursor{pct(text)}",
                field="cursor",
                detail="invalid_cursor",
            ),
            Case(
                f"unicode/{name}/query.state",
                "GET",
                f"/oauth/callback?state={pct(text)}&code=x",
                400,
                "invalid_state",
                answer="page",
                token="none",
            ),
            Case(
                f"unicode/{name}/query.code",
                "GET",
                f"/oauth/callback?code={pct(text)}&state=s",
                400,
                "invalid_state",
                answer="page",
                token="none",
            ),
            Case(
                f"unicode/{name}/query.error",
                "GET",
                f"/oauth/callback?error={pct(text)}&state=s",
                400,
                "invalid_state",
                answer="page",
                token="none",
            ),
            # PSU-* headers: a value that cannot travel as an ASCII header is left out, never altered.
            Case(
                f"unicode/{name}/header.user-agent",
                "GET",
                ACCOUNTS,
                200,
                answer="ok",
                headers=(("User-Agent", wtf8("app/1 " + text)), ("Accept-Language", wtf8(text + "fr"))),
            ),
        ]
        cases += [
            bad_request(
                f"unicode/{name}/path.bank_code/{method} {route}",
                method,
                route.format(bank=pct(BANK + text)),
                field="bank_code",
                body=body,
            )
            for method, route, body in BANK_ROUTES
        ]
    return cases


def path_and_query_cases() -> list[Case]:
    """Unknown banks, banks without a connection, accounts that are not the user's, limits, dates and cursors."""
    cases = [
        *(
            Case(
                f"bank/unknown/{method} {route}",
                method,
                route.format(bank=UNKNOWN_BANK),
                404,
                "bank_not_found",
                detail="unknown bank code",
                body=body,
            )
            for method, route, body in BANK_ROUTES
        ),
        *(
            Case(
                f"bank/not-connected/{method} {route}",
                method,
                route.format(bank=BANK),
                404,
                "connection_not_found",
                detail="connection",
                body=body,
                token="stranger",
            )
            for method, route, body in BANK_ROUTES
        ),
        *(
            bad_request(
                f"bank/{label}/{method} {route}", method, route.format(bank=value), field="bank_code", body=body
            )
            for label, value in (("short", "1380"), ("letters", "abcde"), ("encoded-slash", "13%2F07"))
            for method, route, body in BANK_ROUTES
        ),
        Case(
            "account/not-the-users",
            "GET",
            f"{ACCOUNTS}/038-CPT30019654061/balances",
            404,
            "account_not_found",
            detail="no such account",
        ),
        # Dot segments are refused before any bank call (the bank would see /accounts/../balances)
        bad_request("account/dot-dot", "GET", f"{ACCOUNTS}/%2E%2E/balances", field="account_id"),
        bad_request("account/dot", "GET", f"{ACCOUNTS}/%2E/transactions", field="account_id"),
        Case("account/100-chars", "GET", f"{ACCOUNTS}/{'A' * 100}/transactions", 404, "account_not_found"),
        bad_request("account/101-chars", "GET", f"{ACCOUNTS}/{'A' * 101}/balances", field="account_id"),
        bad_request("account/space", "GET", f"{ACCOUNTS}/a%20b/balances", field="account_id"),
        bad_request("limit/10**12", "GET", f"{TRANSACTIONS}?limit={10**12}", field="limit"),
        bad_request("limit/501", "GET", f"{TRANSACTIONS}?limit=501", field="limit"),
        bad_request("limit/-1", "GET", f"{TRANSACTIONS}?limit=-1", field="limit"),
        bad_request("limit/0", "GET", f"{TRANSACTIONS}?limit=0", field="limit"),
        bad_request("limit/abc", "GET", f"{TRANSACTIONS}?limit=abc", field="limit"),
        bad_request("limit/1e3", "GET", f"{TRANSACTIONS}?limit=1e3", field="limit"),
        bad_request("limit/2.5", "GET", f"{TRANSACTIONS}?limit=2.5", field="limit"),
        bad_request("limit/empty", "GET", f"{TRANSACTIONS}?limit=", field="limit"),
        bad_request("limit/arabic-indic-digit", "GET", f"{TRANSACTIONS}?limit={pct('٣')}", field="limit"),
        bad_request(
            "limit/with-all", "GET", f"{TRANSACTIONS}?all=true&limit=5", field="limit", detail="cannot be combined"
        ),
        bad_request(
            "dates/reversed",
            "GET",
            f"{TRANSACTIONS}?date_from=2025-02-01&date_to=2025-01-01",
            field="date_from",
            detail="date_from must not be after date_to",
        ),
        bad_request(
            "dates/reversed-by-a-day",
            "GET",
            f"{TRANSACTIONS}?date_from=2025-01-02&date_to=2025-01-01",
            field="date_from",
            detail="date_from must not be after date_to",
        ),
        bad_request("dates/month-13", "GET", f"{TRANSACTIONS}?date_from=2025-13-01", field="date_from"),
        bad_request("dates/february-30", "GET", f"{TRANSACTIONS}?date_to=2025-02-30", field="date_to"),
        bad_request("dates/words", "GET", f"{TRANSACTIONS}?date_from=yesterday", field="date_from"),
        bad_request("all/abc", "GET", f"{TRANSACTIONS}?all=abc", field="all"),
        bad_request(
            "cursor/forged",
            "GET",
            f"{TRANSACTIONS}?cursor=c1.{base64.urlsafe_b64encode(bytes(64)).decode().rstrip('=')}",
            field="cursor",
            detail="invalid_cursor",
        ),
        bad_request("cursor/garbage", "GET", f"{TRANSACTIONS}?cursor=garbage", field="cursor", detail="invalid_cursor"),
        bad_request("cursor/empty-body", "GET", f"{TRANSACTIONS}?cursor=c1.", field="cursor", detail="invalid_cursor"),
        bad_request(
            "cursor/truncated",
            "GET",
            f"{TRANSACTIONS}?cursor=$truncated_cursor",
            field="cursor",
            detail="invalid_cursor",
        ),
        bad_request(
            "cursor/one-char-flipped",
            "GET",
            f"{TRANSACTIONS}?cursor=$flipped_cursor",
            field="cursor",
            detail="invalid_cursor",
        ),
        bad_request(
            "cursor/other-prefix",
            "GET",
            f"{TRANSACTIONS}?cursor=$other_prefix_cursor",
            field="cursor",
            detail="invalid_cursor",
        ),
        bad_request(
            "cursor/other-account",
            "GET",
            f"{ACCOUNTS}/{MARC_ACCOUNTS[1]}/transactions?cursor=$cursor",
            field="cursor",
            detail="invalid_cursor",
        ),
        bad_request(
            "cursor/replayed-from-another-user",
            "GET",
            f"{TRANSACTIONS}?cursor=$other_cursor",
            field="cursor",
            detail="invalid_cursor",
        ),
        bad_request(
            "cursor/with-dates",
            "GET",
            f"{TRANSACTIONS}?cursor=$cursor&date_from=2025-01-01",
            field="cursor",
            detail="carries the dates",
        ),
        bad_request("cursor/2049-chars", "GET", f"{TRANSACTIONS}?cursor=c1.{'A' * 2046}", field="cursor"),
        Case("cursor/own-still-opens", "GET", f"{TRANSACTIONS}?cursor=$cursor", 200, answer="ok"),
        Case(
            "callback/unknown-state",
            "GET",
            "/oauth/callback?state=not-a-state&code=x",
            400,
            "invalid_state",
            answer="page",
            token="none",
        ),
        Case(
            "callback/over-long-state",
            "GET",
            f"/oauth/callback?state={'s' * 5000}&code=x",
            400,
            "invalid_state",
            answer="page",
            token="none",
        ),
        Case(
            "callback/50-parameters",
            "GET",
            "/oauth/callback?" + "&".join(f"p{i}=1" for i in range(50)),
            400,
            "invalid_state",
            answer="page",
            token="none",
        ),
        Case(
            "callback/repeated-state",
            "GET",
            "/oauth/callback?state=a&state=b&code=x",
            400,
            "invalid_state",
            answer="page",
            token="none",
        ),
        Case(
            "banks/junk-query-ignored", "GET", f"/v1/banks?x={pct(UNICODE['nul'] + UNICODE['emoji'])}", 200, answer="ok"
        ),
        Case("accounts/junk-query-ignored", "GET", f"/v1/accounts?limit={10**12}", 200, answer="ok"),
    ]
    return cases


# ----------------------------------------------------------------------------------------------------------------
# JWTs: every protected route of the document, with each token the HTTP API JWT authorizer must refuse.
# ----------------------------------------------------------------------------------------------------------------

# Refused by the authorizer: API Gateway answers 401 {"message": "Unauthorized"} and no function runs.
AUTHORIZER_REFUSES: Final = (
    "missing",
    "empty-bearer",
    "not-a-jwt",
    "expired",
    "wrong-audience",
    "wrong-issuer",
    "tampered-payload",
    "foreign-key-same-kid",
    "unknown-kid",
    "alg-none",
    "alg-hs256-with-public-key",
    "not-yet-valid",
    "issued-in-the-future",
    "no-exp",
    "exp-not-a-number",
    "basic-scheme",
)
# Accepted by the authorizer, refused by the function (aisp.api.auth): 401 problem+json ``unauthenticated``.
FUNCTION_REFUSES: Final = ("sub-empty", "sub-256-chars", "sub-nul", "sub-rtl-override", "sub-lone-surrogate")
ROUTE_VALUES: Final = {"bank_code": BANK, "account_id": ACCOUNT}
# A body a wrongly accepted token could not do harm with (a bank the user has no connection to; an empty consent).
ROUTE_BODIES: Final = {
    "POST /v1/connections": {"bank_code": "17515", "return_url": "$api/"},
    "POST /v1/connections/{bank_code}/complete": {"completion": "x" * 43},
    "PUT /v1/connections/{bank_code}/consent": VALID_CONSENT,
}


def protected_routes() -> list[tuple[str, str, bool]]:
    """``(method, path, reads the user)`` of every operation of docs/openapi.json behind the JWT authorizer."""
    document = json.loads(DOCS.read_text(encoding="utf-8"))
    routes = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if operation.get("security", document.get("security")):
                routes.append((method.upper(), path, path != "/v1/banks"))
    return sorted(routes)


def jwt_cases() -> list[Case]:
    cases: list[Case] = []
    for method, path, per_user in protected_routes():
        target = path.format(**ROUTE_VALUES)
        body = ROUTE_BODIES.get(f"{method} {path}", NO_BODY)
        cases += [
            Case(
                f"jwt/{kind}/{method} {path}",
                method,
                target,
                401,
                "Unauthorized",
                answer="gateway",
                body=body,
                token=kind,
            )
            for kind in AUTHORIZER_REFUSES
        ]
        cases += [
            Case(f"jwt/{kind}/{method} {path}", method, target, 401, "unauthenticated", body=body, token=kind)
            if per_user
            else Case(f"jwt/{kind}/{method} {path}", method, target, 200, answer="ok", body=body, token=kind)
            for kind in FUNCTION_REFUSES
        ]
    return cases


def completion_cases() -> list[Case]:
    """``POST .../complete``: a malformed body is a validation error naming the field; any well-formed value that
    activates nothing is the one ``invalid_completion`` answer, whatever it is (no oracle)."""
    complete = f"/v1/connections/{BANK}/complete"
    invalid = "invalid_completion"
    return [
        bad_request("complete/no-body", "POST", complete, field="body"),
        bad_request("complete/empty-object", "POST", complete, field="body.completion", body={}),
        bad_request("complete/empty-value", "POST", complete, field="body.completion", body={"completion": ""}),
        bad_request("complete/257-chars", "POST", complete, field="body.completion", body={"completion": "a" * 257}),
        bad_request("complete/a-number", "POST", complete, field="body.completion", body={"completion": 42}),
        bad_request("complete/a-list", "POST", complete, field="body.completion", body={"completion": ["a" * 43]}),
        bad_request(
            "complete/extra-user-id",
            "POST",
            complete,
            field="body.user_id",
            body={
                "completion": "a" * 43,
                "user_id": "someone-else",
            },
        ),
        Case("complete/unknown-43-chars", "POST", complete, 400, invalid, body={"completion": "a" * 43}),
        Case("complete/unicode", "POST", complete, 400, invalid, body={"completion": "\u00e9\u202e\U0001f600" * 10}),
        Case("complete/nul", "POST", complete, 400, invalid, body={"completion": "a\x00" * 20}),
        Case("complete/a-state-is-not-a-completion", "POST", complete, 400, invalid, body={"completion": "$cursor"}),
        Case(
            "complete/unknown-bank",
            "POST",
            "/v1/connections/99999/complete",
            404,
            "bank_not_found",
            body={"completion": "a" * 43},
        ),
    ]


AISP_USER: Final = "Aisp-User"
PSU_IP: Final = "PSU-IP-Address"
BALANCES: Final = f"/v1/connections/{BANK}/accounts/{ACCOUNT}/balances"
# Aisp-User values that are not a user id (bytes: sent as they are; a client cannot send surrounding blanks).
NOT_A_USER: Final[dict[str, str | bytes]] = {
    "empty": "",
    "256-chars": "u" * 256,
    "control-char": "bad\x01input",
    "del": "bad\x7finput",
    "nul": "bad\x00input",
    "tab-inside": "bad\tinput",
    "rtl-override": wtf8("\u202e" + USER),
    "zero-width": wtf8(USER + "\u200b"),
    "lone-surrogate": wtf8(USER + "\ud800"),
}


def server_routes() -> list[tuple[str, str]]:
    """``(method, path)`` of every operation of docs/openapi.json a server token may call (the reads)."""
    document = json.loads(DOCS.read_text(encoding="utf-8"))
    return sorted(
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if any("serverToken" in requirement for requirement in operation.get("security", []))
    )


def caller_cases() -> list[Case]:
    """Who calls (docs/accounts.md, Unattended access): a server token must name a valid user in Aisp-User, a user
    token must not name anyone, a forwarded PSU-IP-Address needs the attended-proxy scope, and that scope a
    deployment that trusts it. Each a 4xx naming the header."""
    cases: list[Case] = []
    for method, path in server_routes():
        target, route = path.format(**ROUTE_VALUES), f"{method} {path}"
        cases += [
            bad_request(f"aisp-user/missing/{route}", method, target, field=AISP_USER, token="server"),
            bad_request(
                f"aisp-user/with-a-user-token/{route}",
                method,
                target,
                field=AISP_USER,
                headers=((AISP_USER, OTHER_USER),),
            ),
        ]
    cases += [
        bad_request(
            f"aisp-user/{name}", "GET", BALANCES, field=AISP_USER, token="server", headers=((AISP_USER, value),)
        )
        for name, value in NOT_A_USER.items()
    ]
    return [
        *cases,
        bad_request(
            "aisp-user/user-token-naming-itself", "GET", BALANCES, field=AISP_USER, headers=((AISP_USER, USER),)
        ),
        *(
            bad_request(
                f"psu-ip/{name}",
                "GET",
                BALANCES,
                field=PSU_IP,
                token="server",
                headers=((AISP_USER, USER), (PSU_IP, address)),
            )
            for name, address in (("without-the-proxy-scope", "203.0.113.7"), ("invalid-without-the-proxy-scope", "x"))
        ),
        *(
            Case(
                f"attended-proxy/not-trusted/{name}",
                "GET",
                BALANCES,
                403,
                "user_token_required",
                token="proxy",
                headers=((AISP_USER, USER), *forwarded),
            )
            for name, forwarded in (("with-an-address", ((PSU_IP, "203.0.113.7"),)), ("no-address", ()))
        ),
        Case(  # the control: the same server token, naming the user, is served (reading the quota spends nothing)
            "aisp-user/valid-on-the-quota",
            "GET",
            f"/v1/connections/{BANK}/quota",
            200,
            answer="ok",
            token="server",
            headers=((AISP_USER, USER),),
        ),
    ]


CASES: Final = [
    *body_cases(),
    *iban_cases(),
    *unicode_cases(),
    *path_and_query_cases(),
    *completion_cases(),
    *jwt_cases(),
    *caller_cases(),
]


def _segment(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def forged_tokens(stack: RunningStack, user: str) -> dict[str, str | None]:
    """The ``Authorization`` header of each token kind (``None``: no header)."""
    issuer = stack.api.issuer
    assert issuer is not None
    valid = issuer.issue(user)
    header, payload, signature = valid.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = next(iter(issuer.public_keys.values())).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_input = f"{_segment({'alg': 'HS256', 'typ': 'JWT', 'kid': issuer.kid})}.{payload}"
    hs256 = f"{hs_input}.{b64url(hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest())}"
    now = int(time.time())

    def with_claims(**changes: Any) -> str:
        return issuer.issue(user, extra_claims=changes)

    tokens: dict[str, str | None] = {
        "valid": valid,
        "stranger": issuer.issue(STRANGER),
        "missing": None,
        "empty-bearer": "",
        "not-a-jwt": "abc.def",
        "expired": issuer.issue(user, ttl_seconds=-60),
        "wrong-audience": with_claims(aud="another-app"),
        "wrong-issuer": with_claims(iss="https://login.evil.example/"),
        "tampered-payload": f"{header}.{_segment({**claims, 'sub': OTHER_USER})}.{signature}",
        "foreign-key-same-kid": encode(claims, other_key, kid=issuer.kid),
        "unknown-kid": LocalIssuer(issuer=issuer.issuer, audience=issuer.audience, key=other_key).issue(user),
        "alg-none": f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "alg-hs256-with-public-key": hs256,
        "not-yet-valid": with_claims(nbf=now + 3600),
        "issued-in-the-future": with_claims(iat=now + 3600),
        "no-exp": with_claims(exp=None),
        "exp-not-a-number": with_claims(exp="never"),
        "sub-empty": with_claims(sub=""),
        "sub-256-chars": with_claims(sub="u" * 256),
        "sub-nul": with_claims(sub=user + "\x00"),
        "sub-rtl-override": with_claims(sub="\u202e" + user),
        "sub-lone-surrogate": with_claims(sub=user + "\ud800"),
        # The fintech's backend: the unattended scope, and the attended-proxy scope (not trusted by default)
        "server": stack.server_token("bad-input-backend"),
        "proxy": stack.server_token("bad-input-backend", ["aisp/attended-proxy"]),
    }
    headers: dict[str, str | None] = {
        kind: None if token is None else f"Bearer {token}" for kind, token in tokens.items()
    }
    headers["basic-scheme"] = "Basic " + base64.b64encode(b"bad-input:password").decode()
    headers["none"] = None
    return headers


@dataclass
class Target:
    """The stack, the user's credentials of every kind, real cursors and what must never come back."""

    stack: RunningStack
    authorization: dict[str, str | None]
    values: dict[str, str]
    http: requests.Session = field(default_factory=raw_session)

    def send(self, case: Case) -> requests.Response:
        if case.declared_length is not None:
            return self.send_declared_length(case)
        headers: dict[str, str | bytes] = dict(case.headers)
        authorization = self.authorization[case.token]
        if authorization is not None:
            headers["Authorization"] = authorization
        payload = case.payload(self.values)
        if payload is not None and case.content_type is not None:
            headers["Content-Type"] = case.content_type
        url = self.stack.api_url + Template(case.target).safe_substitute(self.values)
        return send(self.http, case.method, url, data=payload, headers=headers)

    def send_declared_length(self, case: Case) -> requests.Response:
        """Headers only, announcing ``case.declared_length`` bytes: API Gateway refuses by the declared size (sending
        megabytes a server will not read could end in a reset instead of its answer)."""
        connection = http.client.HTTPConnection(urlsplit(self.stack.api_url).netloc, timeout=TIMEOUT)
        try:
            connection.putrequest(case.method, case.target)
            connection.putheader("Authorization", str(self.authorization[case.token]))
            connection.putheader("Content-Type", JSON)
            connection.putheader("Content-Length", str(case.declared_length))
            connection.endheaders()
            answer = connection.getresponse()
            response = requests.Response()
            response.status_code = answer.status
            response.headers.update(answer.getheaders())
            response._content = answer.read()  # noqa: SLF001 - a requests.Response built from http.client's answer
        finally:
            connection.close()
        return response

    def secrets(self) -> list[str]:
        """Every token of the run: the user's JWTs, and the bank's access and refresh tokens."""
        jwts = [value.split(" ", 1)[1] for value in self.authorization.values() if value and " " in value]
        bank_tokens: list[str] = []
        for store in self.stack.sandbox.core.stores.values():
            with store.lock:
                bank_tokens += [
                    token for grant in store.grants.values() for token in (grant.access_token, grant.refresh_token)
                ]
        return [secret for secret in [*jwts, *bank_tokens] if len(secret) >= 16]  # noqa: PLR2004


def first_cursor(app: App, account_id: str) -> str:
    page = app.call("GET", f"/v1/connections/{BANK}/accounts/{account_id}/transactions")
    cursor: str = page["next_cursor"]
    assert cursor, page
    return cursor


@pytest.fixture(scope="module")
def target(state_dir) -> Iterator[Target]:
    """The stack, with USER connected to 13807 as Marc and consented, and another user's cursor."""
    with local_stack(state_dir) as stack:
        # The sandbox keeps one grant per PSU: OTHER_USER's cursor first, then USER's connection (which ends
        # OTHER_USER's tokens at the bank; its cursor stays sealed to OTHER_USER).
        other = connect(stack, OTHER_USER).app
        consent_to_everything(other, BANK, MARC_IBANS)
        other_cursor = first_cursor(other, ACCOUNT)
        marc = connect(stack, USER).app
        consent_to_everything(marc, BANK, MARC_IBANS)
        cursor = first_cursor(marc, ACCOUNT)
        middle = len(cursor) // 2
        flipped = cursor[:middle] + ("A" if cursor[middle] != "A" else "B") + cursor[middle + 1 :]
        values = {
            "api": stack.api_url,
            "cursor": cursor,
            "truncated_cursor": cursor[:-6],
            "flipped_cursor": flipped,
            "other_prefix_cursor": "c2." + cursor.removeprefix("c1."),
            "other_cursor": other_cursor,
        }
        yield Target(stack=stack, authorization=forged_tokens(stack, USER), values=values)


def check_answer(case: Case, response: requests.Response) -> None:
    """The answer the API documents for ``case`` (status already checked)."""
    if case.answer == "gateway":  # API Gateway's own answer: the request never reached a function
        assert response.json() == {"message": case.code}
        if response.status_code == 401:  # noqa: PLR2004
            assert response.headers.get("www-authenticate", "").startswith("Bearer")
    elif case.answer == "page":  # the callback's static page for a link that matches nothing
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["x-error-code"] == case.code
        assert response.headers["cache-control"] == "no-store"
    elif case.answer == "problem":
        body = problem(response)
        assert body["code"] == case.code, body
        field_errors = body.get("errors") or []
        # It says what is wrong: a detail, or field errors each with a message.
        assert body.get("detail") or (field_errors and all(error.get("message") for error in field_errors)), body
        if case.field is not None:
            assert any(case.field in error.get("field", "") for error in field_errors), body
        if case.detail is not None:
            assert case.detail in (body.get("detail") or ""), body
    else:
        assert response.headers["content-type"].startswith(JSON)
        response.json()


def test_every_documented_route_gets_bad_input():
    # Given the routes of the committed OpenAPI document
    for route in documented_routes():
        method, path = route.split(" ", 1)
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")

        # Then the table sends each of them bad input
        assert any(case.method == method and pattern.match(case.target.split("?", 1)[0]) for case in CASES), route


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_input_gets_the_documented_answer(target: Target, case: Case):
    # When the request is sent through the HTTP API
    response = target.send(case)
    record(SUITE, cases=1, server_errors=int(response.status_code >= 500))  # noqa: PLR2004

    # Then it gets the documented status and answer, never a 5xx
    assert response.status_code == case.status, f"{case.id}: {response.status_code} {response.text[:400]}"
    check_answer(case, response)

    # And nothing secret comes back: no token of the run, and no IBAN the request sent (in an error)
    for secret in target.secrets():
        assert secret not in response.text, case.id
    if response.status_code >= 400:  # noqa: PLR2004
        for iban in case.sent_ibans():
            assert iban not in response.text, case.id
