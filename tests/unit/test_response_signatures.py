"""The bank's signed answers: signed as BPCE signs them, verified against pinned certificates, per-bank mode.

No socket is open here (unit tier): a keyId URL is an identifier, never fetched, and the bank is in-process.
"""

from __future__ import annotations

import datetime as dt

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from aisp.errors import BankSignatureInvalidError, ConfigurationError
from aisp.observability import metrics
from aisp.signing import (
    PinnedCertificates,
    SignatureError,
    certificate_fingerprint,
    response_key_id,
    sign_response,
    verify_response,
)
from aisp.signing.response import RESPONSE_SIGNED_HEADERS
from aisp.stet import BankClient
from aisp.stet.client import ResponseVerification
from tests.stet_contract import InProcessBank, in_process_client

ORIGIN = "https://www.17515.live.api.89c3.com"
URL = f"{ORIGIN}/stet/psd2/v1.4.2/accounts?x=1"
REQUEST_ID = "9b2c6a1e-0000-4000-8000-000000000001"
BODY = b'{"accounts":[],"_links":{"self":{"href":"/stet/psd2/v1.4.2/accounts"}}}'


def _seal(name: str) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


BANK_KEY, BANK_CERT = _seal("BPCE API seal")
OTHER_KEY, OTHER_CERT = _seal("someone else")
PINNED = PinnedCertificates.of([BANK_CERT])


def _answer(
    body: bytes = BODY,
    *,
    key: str = BANK_KEY,
    cert: str = BANK_CERT,
    url: str = URL,
    request_id: str = REQUEST_ID,
    content_type: str | None = "application/json;charset=UTF-8",
) -> dict[str, str]:
    headers = {"X-Request-ID": request_id}
    if content_type:
        headers["Content-Type"] = content_type
    headers.update(sign_response("GET", url, headers, body, key_id=response_key_id(ORIGIN, cert), private_key_pem=key))
    return headers


def test_an_answer_is_signed_as_bpce_signs_it():
    headers = _answer()

    fingerprint = certificate_fingerprint(BANK_CERT)
    assert len(fingerprint) == 64
    assert f'keyId="{ORIGIN}/api/keyid/certificate_{fingerprint}"' in headers["Signature"]
    assert 'algorithm="rsa-sha256"' in headers["Signature"]
    assert 'headers="digest date content-type x-request-id (request-target)"' in headers["Signature"]
    assert headers["Digest"].startswith("SHA-256=") and headers["Date"].endswith("GMT")
    assert RESPONSE_SIGNED_HEADERS == ("digest", "date", "content-type", "x-request-id", "(request-target)")


@pytest.mark.parametrize("content_type", ["application/json;charset=UTF-8", None], ids=["json", "no-body-201"])
def test_a_signed_answer_verifies_against_the_pinned_certificate(content_type):
    body = BODY if content_type else b""
    headers = _answer(body, content_type=content_type)

    assert verify_response("GET", URL, headers, body, request_id=REQUEST_ID, pinned=PINNED) == (
        certificate_fingerprint(BANK_CERT)
    )


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda h, b: (h, b + b" "), "digest_mismatch"),
        (lambda h, b: ({**h, "X-Request-ID": "another"}, b), "request_id_mismatch"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "Signature"}, b), "missing_signature"),
        (lambda h, b: ({**h, "Date": "Thu, 01 Jan 2026 00:00:00 GMT"}, b), "bad_signature"),
        (lambda h, b: (_answer(b, key=OTHER_KEY, cert=OTHER_CERT), b), "unpinned_key"),
        # Our fingerprint in the keyId, someone else's key behind it: the pinned certificate refuses it
        (lambda h, b: (_answer(b, key=OTHER_KEY), b), "bad_signature"),
        (lambda h, b: ({**h, "Signature": h["Signature"].replace("certificate_", "cert_")}, b), "malformed_key_id"),
    ],
    ids=["body", "request-id", "unsigned", "date", "unpinned", "wrong-key", "keyid"],
)
def test_what_does_not_verify_is_named(tamper, reason):
    headers, body = tamper(_answer(), BODY)

    with pytest.raises(SignatureError) as caught:
        verify_response("GET", URL, headers, body, request_id=REQUEST_ID, pinned=PINNED)
    assert caught.value.reason == reason


def test_an_answer_replayed_to_another_request_does_not_verify():
    # The bank signs our (request-target): the same signed answer does not fit a request for another account
    headers = _answer()
    with pytest.raises(SignatureError) as caught:
        verify_response("GET", URL.replace("?x=1", "?x=2"), headers, BODY, request_id=REQUEST_ID, pinned=PINNED)
    assert caught.value.reason == "bad_signature"


# ----------------------------------------------------------------------------------------------------------------
# The client: off | log | enforce
# ----------------------------------------------------------------------------------------------------------------


def _client(bank: InProcessBank, mode: str, pinned: PinnedCertificates = PINNED) -> BankClient:
    return in_process_client(
        bank,
        bank_code="17515",
        base_url=ORIGIN,
        response_verification=ResponseVerification(mode=mode, pinned=pinned),  # type: ignore[arg-type]
    )


class SigningBank(InProcessBank):
    """An in-process bank that signs its answers (with ``key``/``cert``), or tampers with them."""

    def __init__(self, *, key: str = BANK_KEY, cert: str = BANK_CERT, tamper: bool = False) -> None:
        super().__init__(answer=lambda _m, _u: (200, BODY))
        self.key, self.cert, self.tamper = key, cert, tamper

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        response = super().send(request, **kwargs)
        response.headers["X-Request-ID"] = request.headers["X-Request-ID"]
        response.headers.update(
            sign_response(
                request.method or "",
                request.url or "",
                dict(response.headers),
                response.content,
                key_id=response_key_id(ORIGIN, self.cert),
                private_key_pem=self.key,
            )
        )
        if self.tamper:
            response._content = response.content.replace(b"[]", b"[{}]")  # noqa: SLF001
        return response


def test_enforce_accepts_a_signed_answer():
    accounts = _client(SigningBank(), "enforce").get_accounts("token", None)

    assert accounts.accounts == []
    assert "BankSignatureInvalid" not in metrics.metric_set


def test_enforce_refuses_a_tampered_answer_with_bank_signature_invalid_and_counts_it():
    bank = SigningBank(tamper=True)

    with pytest.raises(BankSignatureInvalidError) as caught:
        _client(bank, "enforce").get_accounts("token", None)

    assert caught.value.details["reason"] == "digest_mismatch"
    assert caught.value.request_id == bank.seen[0].headers["X-Request-ID"]
    assert len(bank.seen) == 1  # never retried
    assert metrics.metric_set["BankSignatureInvalid"]["Value"] == [1.0]


def test_log_uses_the_answer_but_counts_the_failure():
    accounts = _client(SigningBank(tamper=True), "log").get_accounts("token", None)

    assert len(accounts.accounts) == 1
    assert "BankSignatureInvalid" in metrics.metric_set


def test_log_with_nothing_pinned_only_notes_the_unpinned_certificate():
    accounts = _client(SigningBank(), "log", PinnedCertificates.of([])).get_accounts("token", None)

    assert accounts.accounts == []
    assert "BankSignatureInvalid" not in metrics.metric_set


def test_enforce_also_refuses_a_certificate_it_did_not_pin():
    with pytest.raises(BankSignatureInvalidError) as caught:
        _client(SigningBank(key=OTHER_KEY, cert=OTHER_CERT), "enforce").get_accounts("token", None)
    assert caught.value.details["reason"] == "unpinned_key"


def test_off_checks_nothing():
    unsigned = InProcessBank(answer=lambda _m, _u: (200, BODY))
    assert _client(unsigned, "off").get_accounts("token", None).accounts == []


def test_enforce_without_a_pinned_certificate_does_not_start():
    with pytest.raises(ConfigurationError, match="pinned"):
        _client(SigningBank(), "enforce", PinnedCertificates.of([]))
