"""Unit tests for aisp.signing: golden vectors, verification, tampering, the requests auth and its configuration."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from requests.adapters import HTTPAdapter

from aisp.errors import SigningError
from aisp.signing import (
    EMPTY_BODY_DIGEST,
    BankSignatureAuth,
    KeyProvider,
    SignatureError,
    StaticKeyProvider,
    build_signing_string,
    compute_digest,
    parse_signature_header,
    request_target,
    sign_request,
    verify_request,
)

pytestmark = pytest.mark.disable_socket

# Byte-for-byte copy of shared/reference/signature-vectors.json (computed by an implementation independent of this
# project), committed so the suite is self-contained on a clean clone; test_vectors_copy_matches_the_reference
# fails if the two ever differ while shared/ sits beside the repository.
VECTORS_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "signature-vectors.json"
SHARED_VECTORS_FILE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "signature-vectors.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
PRIVATE_PEM: str = VECTORS["private_key_pem"]
PUBLIC_PEM: str = VECTORS["public_key_pem"]
KEY_ID = "PSDFR-ACPR-13807"
FIXED_NOW = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
CONSENT_URL = "https://www.13807.sandbox.api.89c3.com/stet/psd2/v1/consents"
ACCOUNTS_URL = "https://www.13807.sandbox.api.89c3.com/stet/psd2/v1/accounts"
CONSENT_BODY = (
    '{"balances":[{"iban":"FR7613807008043001965405158"}],"transactions":[{"iban":"FR7613807008043001965405158"}],'
    '"trustedBeneficiaries":true,"psuIdentity":true}'
)


def _vector_id(vector: Mapping[str, Any]) -> str:
    return str(vector["name"])


def _make_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _self_signed_cert_pem(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test qsealc")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(FIXED_NOW - timedelta(days=1))
        .not_valid_after(FIXED_NOW + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def vector_private_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(PRIVATE_PEM.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return _make_rsa_key()


def _signed_consent_headers(**overrides: str) -> dict[str, str]:
    """A PUT /consents request signed with the vector key, plus optional header overrides."""
    headers = {"X-Request-ID": "id-1", "Content-Type": "application/json", "PSU-IP-Address": "192.168.0.1"}
    headers.update(sign_request("PUT", CONSENT_URL, headers, CONSENT_BODY, key_id=KEY_ID, private_key_pem=PRIVATE_PEM))
    headers.update(overrides)
    return headers


# ----------------------------------------------------------------------------------------------------------------
# Golden vectors


@pytest.mark.skipif(not SHARED_VECTORS_FILE.exists(), reason="shared/ is not beside this checkout")
def test_vectors_copy_matches_the_reference() -> None:
    assert VECTORS_FILE.read_bytes() == SHARED_VECTORS_FILE.read_bytes()


# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=_vector_id)
def test_golden_vector_digest_signing_string_and_signature(vector: dict[str, Any]) -> None:
    # Given the vector's request and clock
    now = parsedate_to_datetime(vector["date"])

    # When it is signed with the vector key and the default header policy
    added = sign_request(
        vector["method"],
        vector["url"],
        vector["headers"],
        vector["body"],
        key_id=vector["key_id"],
        private_key_pem=PRIVATE_PEM,
        now=now,
    )

    # Then Date, Digest and Signature match the independent implementation exactly
    expected = vector["expected"]
    assert added["Date"] == vector["date"]
    assert added["Digest"] == expected["Digest"]
    assert added["Signature"] == expected["Signature"]
    lowered = {k.lower(): v for k, v in {**vector["headers"], **added}.items()}
    assert (
        build_signing_string(vector["method"], vector["url"], lowered, vector["signed_headers"])
        == (expected["signing_string"])
    )
    assert parse_signature_header(added["Signature"])["headers"] == " ".join(vector["signed_headers"])


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=_vector_id)
def test_golden_vector_with_explicit_header_list_and_existing_date(vector: dict[str, Any]) -> None:
    # Given the vector headers already carrying the Date (lower-case name) and an explicit covered list
    headers = {**vector["headers"], "date": vector["date"]}

    # When signing
    added = sign_request(
        vector["method"],
        vector["url"],
        headers,
        vector["body"].encode(),
        key_id=vector["key_id"],
        private_key_pem=PRIVATE_PEM.encode(),
        signed_headers=vector["signed_headers"],
    )

    # Then no second Date is added and the signature is still the golden one
    assert "Date" not in added
    assert added["Signature"] == vector["expected"]["Signature"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=_vector_id)
def test_golden_vector_verifies(vector: dict[str, Any]) -> None:
    # Given the vector request with its expected Date, Digest and Signature
    headers = {
        **vector["headers"],
        "Date": vector["date"],
        "Digest": vector["expected"]["Digest"],
        "Signature": vector["expected"]["Signature"],
    }

    # When verified with the public key, requiring the STET minimum
    key_id = verify_request(
        vector["method"],
        vector["url"],
        headers,
        vector["body"],
        public_key_pem=PUBLIC_PEM,
        required_headers=("(request-target)", "date", "digest", "x-request-id"),
    )

    # Then the keyId is returned
    assert key_id == vector["key_id"]


@pytest.mark.parametrize("case", VECTORS["must_fail"], ids=_vector_id)
def test_must_fail_vectors_are_rejected(case: dict[str, Any]) -> None:
    # Given a tampered request from the vectors file
    # When verifying it
    # Then a SignatureError is raised
    with pytest.raises(SignatureError) as excinfo:
        verify_request(case["method"], case["url"], case["headers"], case["body"], public_key_pem=PUBLIC_PEM)
    assert excinfo.value.reason in {"digest_mismatch", "bad_signature"}


def test_empty_body_digest_constant() -> None:
    # Given / When / Then: None, "" and b"" all hash to the documented empty digest
    assert compute_digest(None) == compute_digest("") == compute_digest(b"") == EMPTY_BODY_DIGEST
    assert VECTORS["empty_body_digest"] == EMPTY_BODY_DIGEST


def test_request_target_keeps_url_encoding_and_query() -> None:
    # Given a URL with percent-encoded segments and a query
    url = "https://bank.example/stet/psd2/v1/accounts/123%2Fcard/transactions?dateFrom=2026-09-01&x=a%20b"

    # When / Then the path and query are used exactly as written and the method lower-cased
    assert (
        request_target("GET", url) == "get /stet/psd2/v1/accounts/123%2Fcard/transactions?dateFrom=2026-09-01&x=a%20b"
    )
    assert request_target("PUT", "https://bank.example") == "put /"


def test_default_headers_order_with_psu_headers_in_request_order() -> None:
    # Given headers with several PSU headers, content type and unrelated headers in a mixed order
    headers = {
        "Authorization": "Bearer t",
        "PSU-User-Agent": "UA",
        "X-Request-ID": "r-1",
        "Content-Type": "application/json",
        "psu-ip-address": "10.1.2.3",
        "Accept": "application/json",
    }

    # When signing with the default policy
    added = sign_request("PUT", CONSENT_URL, headers, "{}", key_id=KEY_ID, private_key_pem=PRIVATE_PEM, now=FIXED_NOW)

    # Then the STET order is used, PSU headers in request order, unrelated headers not covered
    assert parse_signature_header(added["Signature"])["headers"] == (
        "(request-target) date digest x-request-id content-type psu-user-agent psu-ip-address"
    )


def test_sign_request_without_covered_header_raises_signing_error() -> None:
    # Given a request without X-Request-ID (covered by the default policy)
    # When signing
    # Then a SigningError naming the header (not a SignatureError) is raised
    with pytest.raises(SigningError) as excinfo:
        sign_request("GET", ACCOUNTS_URL, {}, None, key_id=KEY_ID, private_key_pem=PRIVATE_PEM)
    assert not isinstance(excinfo.value, SignatureError)
    assert excinfo.value.details["header"] == "x-request-id"


def test_naive_now_is_taken_as_utc() -> None:
    # Given a naive datetime
    # When signing
    added = sign_request(
        "GET",
        ACCOUNTS_URL,
        {"X-Request-ID": "r"},
        None,
        key_id=KEY_ID,
        private_key_pem=PRIVATE_PEM,
        now=datetime(2026, 11, 24, 10, 0, 0),
    )

    # Then the Date is the same instant in GMT
    assert added["Date"] == "Tue, 24 Nov 2026 10:00:00 GMT"


# ----------------------------------------------------------------------------------------------------------------
# Verification: round trips and tampering
# ----------------------------------------------------------------------------------------------------------------


def test_round_trip_put_with_case_insensitive_lookup() -> None:
    # Given a signed PUT whose header names arrive lower-cased (as some servers expose them)
    headers = {k.lower(): v for k, v in _signed_consent_headers().items()}

    # When verified
    key_id = verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY.encode(), public_key_pem=PUBLIC_PEM)

    # Then it passes
    assert key_id == KEY_ID


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        ("Date", "Tue, 24 Nov 2026 10:00:01 GMT", "bad_signature"),
        ("Digest", "SHA-256=YWxH10BQRrjS+cXY4jPHZcaXOm1m0OM+21ur7wGYBP1=", "digest_mismatch"),
        ("X-Request-ID", "id-2", "bad_signature"),
        ("Content-Type", "text/plain", "bad_signature"),
        ("PSU-IP-Address", "192.168.0.2", "bad_signature"),
    ],
)
def test_each_signed_header_changed_fails(header: str, value: str, reason: str) -> None:
    # Given a correctly signed request with one covered header changed afterwards
    headers = _signed_consent_headers(**{header: value})

    # When verifying
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=PUBLIC_PEM)

    # Then the right failure is reported
    assert excinfo.value.reason == reason


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", CONSENT_URL),
        ("PUT", CONSENT_URL + "?x=1"),
        ("PUT", CONSENT_URL.replace("/v1/", "/v2/")),
    ],
    ids=["method", "query-added", "path"],
)
def test_request_target_changed_fails(method: str, url: str) -> None:
    # Given a signed PUT /consents replayed with another method, path or query
    headers = _signed_consent_headers()

    # When / Then verification fails on the signature
    with pytest.raises(SignatureError) as excinfo:
        verify_request(method, url, headers, CONSENT_BODY, public_key_pem=PUBLIC_PEM)
    assert excinfo.value.reason == "bad_signature"


def test_body_changed_fails() -> None:
    # Given a signed request whose body changed (Digest left as is)
    headers = _signed_consent_headers()

    # When / Then the Digest check catches it
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY.replace("true", "false"), public_key_pem=PUBLIC_PEM)
    assert excinfo.value.reason == "digest_mismatch"


def test_digest_missing_fails_even_for_empty_body() -> None:
    # Given signed requests from which the Digest header was removed
    headers = _signed_consent_headers()
    del headers["Digest"]
    get_headers = {"X-Request-ID": "r-1"}
    get_headers.update(sign_request("GET", ACCOUNTS_URL, get_headers, None, key_id=KEY_ID, private_key_pem=PRIVATE_PEM))
    del get_headers["Digest"]

    # When / Then both are refused (STET requires Digest on every request)
    for method, url, hdrs, body in (
        ("PUT", CONSENT_URL, headers, CONSENT_BODY),
        ("GET", ACCOUNTS_URL, get_headers, b""),
    ):
        with pytest.raises(SignatureError) as excinfo:
            verify_request(method, url, hdrs, body, public_key_pem=PUBLIC_PEM)
        assert excinfo.value.reason == "missing_digest"


def test_digest_not_covered_with_body_fails_but_is_allowed_without_body() -> None:
    # Given a PUT with a body whose signature does not cover digest, and a GET likewise
    put_headers = {"X-Request-ID": "r-1", "Content-Type": "application/json"}
    put_headers.update(
        sign_request(
            "PUT",
            CONSENT_URL,
            put_headers,
            CONSENT_BODY,
            key_id=KEY_ID,
            private_key_pem=PRIVATE_PEM,
            signed_headers=["(request-target)", "date", "x-request-id"],
        )
    )
    get_headers = {"X-Request-ID": "r-2"}
    get_headers.update(
        sign_request(
            "GET",
            ACCOUNTS_URL,
            get_headers,
            None,
            key_id=KEY_ID,
            private_key_pem=PRIVATE_PEM,
            signed_headers=["(request-target)", "x-request-id"],
        )
    )

    # When verifying
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, put_headers, CONSENT_BODY, public_key_pem=PUBLIC_PEM)

    # Then the PUT is refused, and the GET (empty body, digest still present and correct) passes
    assert excinfo.value.reason == "digest_not_signed"
    assert verify_request("GET", ACCOUNTS_URL, get_headers, None, public_key_pem=PUBLIC_PEM) == KEY_ID


def test_digest_with_several_algorithms_uses_sha256() -> None:
    # Given a Digest header listing another algorithm next to SHA-256 (RFC 3230)
    headers = {"X-Request-ID": "r-1"}
    digest = "MD5=1B2M2Y8AsgTpgAmY7PhCfg==, " + compute_digest(b"")
    headers["Digest"] = digest
    headers.update(sign_request("GET", ACCOUNTS_URL, headers, None, key_id=KEY_ID, private_key_pem=PRIVATE_PEM))
    headers["Digest"] = digest  # the signer recomputes Digest; put the multi-valued one back and re-sign over it
    headers.pop("Signature")
    lowered = {k.lower(): v for k, v in headers.items()}
    names = ["(request-target)", "date", "digest", "x-request-id"]
    key = serialization.load_pem_private_key(PRIVATE_PEM.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    raw = key.sign(
        build_signing_string("GET", ACCOUNTS_URL, lowered, names).encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    signature_b64 = base64.b64encode(raw).decode()
    headers["Signature"] = (
        f'keyId="{KEY_ID}",algorithm="rsa-sha256",headers="{" ".join(names)}",signature="{signature_b64}"'
    )

    # When / Then the SHA-256 member is checked and the request verifies
    assert verify_request("GET", ACCOUNTS_URL, headers, b"", public_key_pem=PUBLIC_PEM) == KEY_ID


def test_required_header_dropped_from_headers_param_fails() -> None:
    # Given a request signed without psu-ip-address in headers= (though the header is sent)
    headers = {"X-Request-ID": "r-1", "PSU-IP-Address": "1.2.3.4"}
    headers.update(
        sign_request(
            "GET",
            ACCOUNTS_URL,
            headers,
            None,
            key_id=KEY_ID,
            private_key_pem=PRIVATE_PEM,
            signed_headers=["(request-target)", "date", "digest", "x-request-id"],
        )
    )

    # When the verifier requires psu-ip-address to be covered
    with pytest.raises(SignatureError) as excinfo:
        verify_request(
            "GET",
            ACCOUNTS_URL,
            headers,
            None,
            public_key_pem=PUBLIC_PEM,
            required_headers=["(request-target)", "PSU-IP-Address"],
        )

    # Then it is refused, naming the header
    assert excinfo.value.reason == "required_header_not_signed"
    assert excinfo.value.header == "psu-ip-address"


def test_covered_header_missing_from_request_fails() -> None:
    # Given a signed request from which a covered header was removed
    headers = _signed_consent_headers()
    del headers["PSU-IP-Address"]

    # When / Then
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=PUBLIC_PEM)
    assert excinfo.value.reason == "missing_header"
    assert excinfo.value.header == "psu-ip-address"


def test_wrong_key_fails(other_key: rsa.RSAPrivateKey) -> None:
    # Given a request signed with the vector key
    headers = _signed_consent_headers()

    # When verified with another public key
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=_public_pem(other_key))

    # Then the signature does not verify
    assert excinfo.value.reason == "bad_signature"


def test_certificate_pem_as_verifier_key(vector_private_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    # Given the signer's certificate (QSealC-like) and a certificate for another key
    good_cert = _self_signed_cert_pem(vector_private_key)
    other_cert = _self_signed_cert_pem(other_key)
    headers = _signed_consent_headers()

    # When / Then the matching certificate verifies and the other one does not
    assert verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=good_cert.encode()) == KEY_ID
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=other_cert)
    assert excinfo.value.reason == "bad_signature"


def test_unusable_verifier_key_is_a_signature_error() -> None:
    # Given a garbage verifier key
    headers = _signed_consent_headers()

    # When / Then verification fails with a stable reason (and no traceback chaining to parser text)
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem="-----BEGIN PUBLIC KEY-----\nAAAA\n")
    assert excinfo.value.reason == "bad_key"


def test_missing_signature_header_fails() -> None:
    # Given a request with Digest but no Signature
    headers = _signed_consent_headers()
    del headers["Signature"]

    # When / Then
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=PUBLIC_PEM)
    assert excinfo.value.reason == "missing_signature"


def _replace_param(signature: str, name: str, value: str | None) -> str:
    params = parse_signature_header(signature)
    if value is None:
        params.pop(name)
    else:
        params[name] = value
    return ",".join(f'{k}="{v}"' for k, v in params.items())


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda s: "", "missing_signature"),
        (lambda s: "garbage", "malformed_signature"),
        (lambda s: s.replace('keyId="', "keyId="), "malformed_signature"),
        (lambda s: s + ',keyId="again"', "malformed_signature"),
        (lambda s: _replace_param(s, "keyId", None), "malformed_signature"),
        (lambda s: _replace_param(s, "keyId", ""), "malformed_signature"),
        (lambda s: _replace_param(s, "signature", None), "malformed_signature"),
        (lambda s: _replace_param(s, "signature", "not base64!"), "malformed_signature"),
        (lambda s: _replace_param(s, "headers", None), "malformed_signature"),
        (lambda s: _replace_param(s, "headers", ""), "malformed_signature"),
        (lambda s: _replace_param(s, "headers", "date date digest"), "malformed_signature"),
        (lambda s: _replace_param(s, "headers", "(created) date digest"), "malformed_signature"),
        (lambda s: _replace_param(s, "algorithm", "hmac-sha256"), "unsupported_algorithm"),
        (lambda s: _replace_param(s, "algorithm", "rsa-sha1"), "unsupported_algorithm"),
        (lambda s: _replace_param(s, "algorithm", None), "unsupported_algorithm"),
    ],
    ids=[
        "empty",
        "garbage",
        "unquoted",
        "duplicate-param",
        "no-keyid",
        "empty-keyid",
        "no-signature",
        "bad-base64",
        "no-headers",
        "empty-headers",
        "duplicate-header",
        "unsupported-pseudo-header",
        "hmac",
        "sha1",
        "no-algorithm",
    ],
)
def test_malformed_or_unsupported_signature_header_fails(mutate: Any, reason: str) -> None:
    # Given a signed request whose Signature header is damaged
    headers = _signed_consent_headers()
    headers["Signature"] = mutate(headers["Signature"])

    # When / Then the verifier refuses it with a stable reason
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=PUBLIC_PEM)
    assert excinfo.value.reason == reason


def test_duplicate_header_spellings_are_refused() -> None:
    # Given a header map with two spellings of the same covered header
    headers = _signed_consent_headers()
    headers["psu-ip-address"] = "6.6.6.6"

    # When / Then the ambiguity is refused
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=PUBLIC_PEM)
    assert excinfo.value.reason == "duplicate_header"


def test_signature_error_is_a_signing_error_with_safe_details() -> None:
    # Given / When a verification failure
    headers = _signed_consent_headers(**{"PSU-IP-Address": "10.9.9.9"})
    with pytest.raises(SigningError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=PUBLIC_PEM)

    # Then it is a SignatureError whose message and details carry no header values or signatures
    assert isinstance(excinfo.value, SignatureError)
    text = str(excinfo.value) + repr(excinfo.value.details)
    assert "10.9.9.9" not in text
    assert parse_signature_header(headers["Signature"])["signature"] not in text


# ----------------------------------------------------------------------------------------------------------------
# BankSignatureAuth through a requests Session with a verifying in-process adapter
# ----------------------------------------------------------------------------------------------------------------


class VerifyingAdapter(HTTPAdapter):
    """In-process transport: verifies the signature with verify_request and answers 200/401 without any socket."""

    def __init__(self, public_key_pem: str, *, tamper: dict[str, str] | None = None) -> None:
        super().__init__()
        self.public_key_pem = public_key_pem
        self.tamper = tamper or {}
        self.seen: list[requests.PreparedRequest] = []
        self.errors: list[SignatureError] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.seen.append(request)
        headers = dict(request.headers)
        headers.update(self.tamper)
        response = requests.Response()
        response.request = request
        response.url = request.url or ""
        try:
            key_id = verify_request(
                request.method or "",
                request.url or "",
                headers,
                request.body,
                public_key_pem=self.public_key_pem,
                required_headers=("(request-target)", "date", "digest", "x-request-id"),
            )
        except SignatureError as exc:
            self.errors.append(exc)
            response.status_code = 401
            response._content = json.dumps({"reason": exc.reason}).encode()
        else:
            response.status_code = 200
            response._content = json.dumps({"keyId": key_id}).encode()
        return response


def _session_with(adapter: HTTPAdapter) -> requests.Session:
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def test_auth_signs_get_and_put_verified_by_transport() -> None:
    # Given a session whose transport verifies signatures, and the auth configured with the vector key
    adapter = VerifyingAdapter(PUBLIC_PEM)
    session = _session_with(adapter)
    auth = BankSignatureAuth(key_id=KEY_ID, private_key_pem=PRIVATE_PEM)

    # When a GET with PSU headers and a PUT with a JSON body go through it
    get = session.get(
        ACCOUNTS_URL + "?page=2",
        headers={"X-Request-ID": "r-1", "PSU-IP-Address": "192.168.0.1", "Authorization": "Bearer t"},
        auth=auth,
    )
    put = session.put(
        CONSENT_URL,
        data=CONSENT_BODY.encode(),
        headers={"X-Request-ID": "r-2", "Content-Type": "application/json"},
        auth=auth,
    )

    # Then both verify server-side, with the expected covered headers
    assert (get.status_code, put.status_code) == (200, 200)
    assert get.json() == {"keyId": KEY_ID}
    get_params = parse_signature_header(adapter.seen[0].headers["Signature"])
    put_params = parse_signature_header(adapter.seen[1].headers["Signature"])
    assert get_params["headers"] == "(request-target) date digest x-request-id psu-ip-address"
    assert put_params["headers"] == "(request-target) date digest x-request-id content-type"
    assert adapter.seen[0].headers["Digest"] == EMPTY_BODY_DIGEST
    assert adapter.seen[1].headers["Digest"] == VECTORS["vectors"][1]["expected"]["Digest"]
    assert adapter.errors == []


def test_auth_with_fixed_policy_and_key_provider() -> None:
    # Given an auth with a StaticKeyProvider and the Yolt-style fixed policy
    adapter = VerifyingAdapter(PUBLIC_PEM)
    session = _session_with(adapter)
    auth = BankSignatureAuth(
        key_provider=StaticKeyProvider(key_id=KEY_ID, private_key_pem=PRIVATE_PEM),
        signed_headers=["(request-target)", "Date", "Digest", "X-Request-ID"],
    )

    # When a GET with a PSU header is sent
    response = session.get(ACCOUNTS_URL, headers={"X-Request-ID": "r-1", "PSU-IP-Address": "1.1.1.1"}, auth=auth)

    # Then it verifies and only the fixed (lower-cased) list is covered
    assert response.status_code == 200
    assert parse_signature_header(adapter.seen[0].headers["Signature"])["headers"] == (
        "(request-target) date digest x-request-id"
    )


def test_auth_keeps_existing_date_and_matches_golden_signature() -> None:
    # Given a prepared request equal to the golden GET /accounts vector (Date already set)
    vector = VECTORS["vectors"][0]
    auth = BankSignatureAuth(key_id=KEY_ID, private_key_pem=PRIVATE_PEM)
    request = requests.Request("GET", vector["url"], headers={**vector["headers"], "Date": vector["date"]}).prepare()

    # When the auth signs it in place
    returned = auth(request)

    # Then it is the same object, the Date is kept and the signature is byte-identical to the vector
    assert returned is request
    assert request.headers["Date"] == vector["date"]
    assert request.headers["Signature"] == vector["expected"]["Signature"]


@pytest.mark.parametrize(
    "tamper",
    [
        {"X-Request-ID": "other"},
        {"PSU-IP-Address": "10.0.0.1"},
        {"Date": "Mon, 01 Jan 2001 00:00:00 GMT"},
        {"Digest": compute_digest(b"x")},
    ],
    ids=["x-request-id", "psu-ip", "date", "digest"],
)
def test_auth_tampered_in_transit_is_rejected(tamper: dict[str, str]) -> None:
    # Given a transport that alters a header after signing
    adapter = VerifyingAdapter(PUBLIC_PEM, tamper=tamper)
    session = _session_with(adapter)
    auth = BankSignatureAuth(key_id=KEY_ID, private_key_pem=PRIVATE_PEM)

    # When a signed GET goes through
    response = session.get(ACCOUNTS_URL, headers={"X-Request-ID": "r-1", "PSU-IP-Address": "1.1.1.1"}, auth=auth)

    # Then the verifier refuses it
    assert response.status_code == 401
    assert len(adapter.errors) == 1
    assert response.json()["reason"] in {"bad_signature", "digest_mismatch"}


def test_auth_signed_by_other_key_is_rejected(other_key: rsa.RSAPrivateKey) -> None:
    # Given an auth using another key than the one the server trusts
    adapter = VerifyingAdapter(PUBLIC_PEM)
    session = _session_with(adapter)
    auth = BankSignatureAuth(key_id=KEY_ID, private_key_pem=_private_pem(other_key))

    # When / Then
    response = session.get(ACCOUNTS_URL, headers={"X-Request-ID": "r-1"}, auth=auth)
    assert response.status_code == 401
    assert adapter.errors[0].reason == "bad_signature"


class CountingProvider:
    """A KeyProvider that counts how often the key is fetched."""

    def __init__(self) -> None:
        self.calls = 0
        self._inner = StaticKeyProvider(key_id=KEY_ID, private_key_pem=PRIVATE_PEM)

    @property
    def key_id(self) -> str:
        return self._inner.key_id

    def private_key(self) -> rsa.RSAPrivateKey:
        self.calls += 1
        return self._inner.private_key()


def test_key_is_loaded_once_at_construction() -> None:
    # Given an auth built from a counting provider
    provider = CountingProvider()
    assert isinstance(provider, KeyProvider)
    auth = BankSignatureAuth(key_provider=provider)
    session = _session_with(VerifyingAdapter(PUBLIC_PEM))

    # When several requests are signed
    statuses = [session.get(ACCOUNTS_URL, headers={"X-Request-ID": f"r-{i}"}, auth=auth).status_code for i in range(3)]

    # Then the key was fetched exactly once, at construction
    assert statuses == [200, 200, 200]
    assert provider.calls == 1


def test_auth_refuses_streamed_body() -> None:
    # Given a prepared request with a generator body (cannot be digested without consuming it)
    auth = BankSignatureAuth(key_id=KEY_ID, private_key_pem=PRIVATE_PEM)
    request = requests.Request("PUT", CONSENT_URL, headers={"X-Request-ID": "r"}, data=iter([b"a", b"b"])).prepare()

    # When / Then
    with pytest.raises(SigningError) as excinfo:
        auth(request)
    assert excinfo.value.details["reason"] == "unsupported_body"


# ----------------------------------------------------------------------------------------------------------------
# Configuration errors never leak key material
# ----------------------------------------------------------------------------------------------------------------

_PEM_BODY_LINE = PRIVATE_PEM.splitlines()[1]


def _ec_private_pem() -> str:
    return _private_pem(ec.generate_private_key(ec.SECP256R1()))


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"key_id": KEY_ID, "private_key_pem": "not a pem"}, "bad_pem"),
        ({"key_id": KEY_ID, "private_key_pem": PRIVATE_PEM.replace(_PEM_BODY_LINE, _PEM_BODY_LINE[::-1])}, "bad_pem"),
        ({"key_id": KEY_ID, "private_key_pem": PRIVATE_PEM[:400]}, "bad_pem"),
        ({"key_id": KEY_ID, "private_key_pem": ""}, "empty_key"),
        ({"key_id": "", "private_key_pem": PRIVATE_PEM}, "empty_key_id"),
        ({"key_id": "   ", "private_key_pem": PRIVATE_PEM}, "empty_key_id"),
        ({"key_id": 'a"b', "private_key_pem": PRIVATE_PEM}, "bad_key_id"),
        ({"private_key_pem": PRIVATE_PEM}, "empty_key_id"),
        ({"key_id": KEY_ID}, "bad_configuration"),
        ({}, "bad_configuration"),
        ({"key_id": KEY_ID, "private_key_pem": PRIVATE_PEM, "signed_headers": []}, "bad_policy"),
        ({"key_id": KEY_ID, "private_key_pem": PRIVATE_PEM, "signed_headers": "date digest"}, "bad_policy"),
        ({"key_id": KEY_ID, "private_key_pem": PRIVATE_PEM, "signed_headers": ["date", "Date"]}, "bad_policy"),
        ({"key_id": KEY_ID, "private_key_pem": PRIVATE_PEM, "signed_headers": ["(created)"]}, "bad_policy"),
        ({"key_id": KEY_ID, "private_key_pem": PRIVATE_PEM, "signed_headers": ["bad name"]}, "bad_policy"),
    ],
    ids=[
        "not-pem",
        "corrupted-pem",
        "truncated-pem",
        "empty-pem",
        "empty-key-id",
        "blank-key-id",
        "quote-in-key-id",
        "missing-key-id",
        "no-key",
        "nothing",
        "empty-policy",
        "string-policy",
        "duplicate-policy",
        "pseudo-header-policy",
        "invalid-header-name",
    ],
)
def test_auth_config_errors(kwargs: dict[str, Any], reason: str) -> None:
    # Given an invalid configuration
    # When building the auth
    with pytest.raises(SigningError) as excinfo:
        BankSignatureAuth(**kwargs)

    # Then a SigningError with a stable reason is raised, and nothing of the key appears in it or its cause chain
    assert excinfo.value.details["reason"] == reason
    rendered = str(excinfo.value) + repr(excinfo.value.details) + repr(excinfo.value.__cause__)
    assert _PEM_BODY_LINE not in rendered
    assert _PEM_BODY_LINE[::-1] not in rendered
    assert "PRIVATE KEY" not in rendered
    assert excinfo.value.__cause__ is None


def test_non_rsa_key_is_refused_without_leaking() -> None:
    # Given an EC private key
    pem = _ec_private_pem()

    # When / Then
    with pytest.raises(SigningError) as excinfo:
        BankSignatureAuth(key_id=KEY_ID, private_key_pem=pem)
    assert excinfo.value.details["reason"] == "not_rsa"
    assert pem.splitlines()[1] not in str(excinfo.value) + repr(excinfo.value.details)


def test_short_rsa_key_is_refused() -> None:
    # Given a 1024-bit RSA key
    pem = _private_pem(_make_rsa_key(1024))

    # When / Then
    with pytest.raises(SigningError) as excinfo:
        StaticKeyProvider(key_id=KEY_ID, private_key_pem=pem)
    assert excinfo.value.details["reason"] == "weak_key"


def test_provider_and_key_id_together_is_refused() -> None:
    # Given both a provider and a key_id / private key
    provider = StaticKeyProvider(key_id=KEY_ID, private_key_pem=PRIVATE_PEM)

    # When / Then each ambiguous combination is refused
    with pytest.raises(SigningError):
        BankSignatureAuth(key_provider=provider, key_id="other")
    with pytest.raises(SigningError):
        BankSignatureAuth(key_provider=provider, private_key_pem=PRIVATE_PEM)


def test_reprs_hide_key_material() -> None:
    # Given an auth and a provider
    provider = StaticKeyProvider(key_id=KEY_ID, private_key_pem=PRIVATE_PEM)
    auth = BankSignatureAuth(key_provider=provider)

    # When / Then their reprs name the keyId only
    for text in (repr(provider), repr(auth)):
        assert KEY_ID in text
        assert _PEM_BODY_LINE not in text
        assert "KEY-----" not in text


def test_sign_request_bad_key_raises_signing_error() -> None:
    # Given / When / Then: the functional API validates the key too
    with pytest.raises(SigningError) as excinfo:
        sign_request("GET", ACCOUNTS_URL, {"X-Request-ID": "r"}, None, key_id=KEY_ID, private_key_pem="nope")
    assert excinfo.value.details["reason"] == "bad_pem"
    with pytest.raises(SigningError):
        sign_request("GET", ACCOUNTS_URL, {"X-Request-ID": "r"}, None, key_id="", private_key_pem=PRIVATE_PEM)
