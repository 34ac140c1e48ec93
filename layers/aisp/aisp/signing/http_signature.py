"""draft-cavage HTTP Signatures with ``rsa-sha256``, as STET (and so BPCE 89C3) require.

Signing string: one ``name: value`` line per covered header, names lower-cased, joined by ``\\n``;
``(request-target)`` is the lower-case method, a space, and the path plus ``?query`` exactly as sent.
``Digest`` is ``SHA-256=<base64(sha256(raw body))>``; ``Date`` is RFC 1123 GMT.

The module offers plain functions (:func:`sign_request`, :func:`verify_request`) and a ``requests`` auth
(:class:`BankSignatureAuth`) built from small overridable steps. Nothing here logs or returns key material;
error messages are constant strings and ``details`` only ever name headers or reasons.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import formatdate
from functools import lru_cache
from typing import Final
from urllib.parse import urlsplit

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from aisp.errors import SigningError
from aisp.signing.keys import KeyProvider, StaticKeyProvider, load_public_key

__all__ = [
    "ALGORITHM",
    "EMPTY_BODY_DIGEST",
    "REQUEST_TARGET",
    "BankSignatureAuth",
    "SignatureError",
    "build_signing_string",
    "compute_digest",
    "default_signed_headers",
    "format_http_date",
    "parse_signature_header",
    "request_target",
    "sign_request",
    "verify_request",
]

ALGORITHM: Final = "rsa-sha256"
REQUEST_TARGET: Final = "(request-target)"
EMPTY_BODY_DIGEST: Final = "SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

_DIGEST_PREFIX: Final = "SHA-256="
_PSU_PREFIX: Final = "psu-"
# One ``name="value"`` parameter of a Signature header, followed by a comma or the end.
_PARAM_RE: Final = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*"([^"]*)"\s*(?:,|$)')
_TOKEN_RE: Final = re.compile(r"^(?:\([a-z-]+\)|[!#$%&'*+.^_`|~0-9a-z-]+)$")


class SignatureError(SigningError):
    """A request signature (or its ``Digest``) is missing, malformed, unsupported or does not verify.

    ``reason`` is a stable machine-readable code (``missing_signature``, ``malformed_signature``,
    ``unsupported_algorithm``, ``missing_digest``, ``digest_mismatch``, ``digest_not_signed``,
    ``required_header_not_signed``, ``missing_header``, ``bad_signature``, ``bad_key``...).
    """

    def __init__(self, message: str, *, reason: str, header: str | None = None) -> None:
        details: dict[str, str] = {"reason": reason}
        if header is not None:
            details["header"] = header
        super().__init__(message, details=details)
        self.reason = reason
        self.header = header


# --------------------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------------------


def _body_bytes(body: bytes | bytearray | str | None) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise SigningError("request body must be bytes or str to be signed", details={"reason": "unsupported_body"})


def compute_digest(body: bytes | str | None) -> str:
    """Return the STET ``Digest`` header value, ``SHA-256=<base64 sha256>``, of the raw body bytes.

    A ``str`` body is encoded as UTF-8; an empty or ``None`` body gives :data:`EMPTY_BODY_DIGEST`.
    """
    raw = _body_bytes(body)
    if not raw:
        return EMPTY_BODY_DIGEST
    return _DIGEST_PREFIX + base64.b64encode(hashlib.sha256(raw).digest()).decode("ascii")


def format_http_date(now: datetime | None = None) -> str:
    """Format ``now`` (default: the current time) as an RFC 1123 GMT date, e.g. ``Tue, 24 Nov 2026 10:00:00 GMT``.

    A naive ``datetime`` is taken as UTC.
    """
    if now is None:
        return formatdate(usegmt=True)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return formatdate(now.timestamp(), usegmt=True)


def request_target(method: str, url: str) -> str:
    """Return the ``(request-target)`` value: lower-case method, space, path and ``?query`` exactly as in ``url``."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return f"{method.lower()} {path}"


def _lower_headers(headers: Mapping[str, str], *, error: type[SigningError]) -> dict[str, str]:
    """Index headers by lower-case name; two spellings of one header are ambiguous and refused."""
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in lowered:
            if error is SignatureError:
                raise SignatureError("duplicate header in request", reason="duplicate_header", header=key)
            raise SigningError("duplicate header in request", details={"reason": "duplicate_header", "header": key})
        lowered[key] = value
    return lowered


def default_signed_headers(lowered_headers: Iterable[str]) -> list[str]:
    """The STET/BPCE default list of covered headers.

    ``(request-target) date digest x-request-id``, then ``content-type`` when present, then every ``psu-*``
    header present, in the order given.

    Parameters
    ----------
    lowered_headers
        Lower-case names of the headers the request will carry (in sending order).
    """
    names = list(lowered_headers)
    covered = [REQUEST_TARGET, "date", "digest", "x-request-id"]
    if "content-type" in names:
        covered.append("content-type")
    covered.extend(n for n in names if n.startswith(_PSU_PREFIX))
    return covered


def build_signing_string(
    method: str, url: str, lowered_headers: Mapping[str, str], signed_headers: Sequence[str]
) -> str:
    """Build the draft-cavage signing string.

    Parameters
    ----------
    method, url
        The request line as sent.
    lowered_headers
        Request headers indexed by **lower-case** name.
    signed_headers
        Lower-case names of the covered headers, in order (``(request-target)`` allowed).

    Raises
    ------
    SignatureError
        A covered header is absent from the request (``reason="missing_header"``) or an unsupported
        pseudo-header is listed.
    """
    lines: list[str] = []
    for name in signed_headers:
        if name == REQUEST_TARGET:
            lines.append(f"{REQUEST_TARGET}: {request_target(method, url)}")
            continue
        if name.startswith("("):
            raise SignatureError("unsupported pseudo-header in signature", reason="malformed_signature", header=name)
        value = lowered_headers.get(name)
        if value is None:
            raise SignatureError("signed header missing from request", reason="missing_header", header=name)
        lines.append(f"{name}: {value.strip()}")
    return "\n".join(lines)


def _normalise_signed_headers(signed_headers: Sequence[str]) -> list[str]:
    if isinstance(signed_headers, str):
        raise SigningError("signed_headers must be a sequence of names", details={"reason": "bad_policy"})
    names = [h.strip().lower() for h in signed_headers]
    if not names or any(not _TOKEN_RE.match(n) for n in names):
        raise SigningError("signed_headers holds an invalid name", details={"reason": "bad_policy"})
    if len(set(names)) != len(names):
        raise SigningError("signed_headers holds a duplicate name", details={"reason": "bad_policy"})
    if any(n.startswith("(") and n != REQUEST_TARGET for n in names):
        raise SigningError("signed_headers holds an unsupported pseudo-header", details={"reason": "bad_policy"})
    return names


def _rsa_sign(key: rsa.RSAPrivateKey, signing_string: str) -> str:
    signature = key.sign(signing_string.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def _signature_header(key_id: str, signed_headers: Sequence[str], signature_b64: str) -> str:
    return f'keyId="{key_id}",algorithm="{ALGORITHM}",headers="{" ".join(signed_headers)}",signature="{signature_b64}"'


# --------------------------------------------------------------------------------------------------------------
# sign_request / verify_request
# --------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _cached_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    # key_id is irrelevant for parsing; StaticKeyProvider validates the key.
    return StaticKeyProvider(key_id="-", private_key_pem=pem).private_key()


@lru_cache(maxsize=64)
def _cached_public_key(pem: bytes) -> rsa.RSAPublicKey:
    return load_public_key(pem)


def _pem_bytes(pem: str | bytes) -> bytes:
    return pem.encode("utf-8") if isinstance(pem, str) else bytes(pem)


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | str | None,
    *,
    key_id: str,
    private_key_pem: str | bytes,
    signed_headers: Sequence[str] | None = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """Sign a request and return the headers to add (``Date`` if absent, ``Digest``, ``Signature``).

    Parameters
    ----------
    method, url
        The request line exactly as it will be sent (the URL is not re-encoded).
    headers
        Headers the request already carries; lookup is case-insensitive.
    body
        Raw body (``str`` is UTF-8 encoded); ``None`` or empty for none.
    key_id
        ``keyId`` of the Signature header (BPCE: the client_id).
    private_key_pem
        RSA private key PEM (parsed once per distinct PEM and cached).
    signed_headers
        Covered headers; default :func:`default_signed_headers`.
    now
        Clock for the ``Date`` header (tests).

    Returns
    -------
    dict[str, str]
        ``{"Date": ..., "Digest": ..., "Signature": ...}`` (``Date`` only when not already in ``headers``).

    Raises
    ------
    SigningError
        Bad key or key_id, bad policy, or a covered header missing.
    """
    if not isinstance(key_id, str) or not key_id.strip() or '"' in key_id:
        raise SigningError("signing key_id is empty or invalid", details={"reason": "bad_key_id"})
    key = _cached_private_key(_pem_bytes(private_key_pem))
    lowered = _lower_headers(headers, error=SigningError)
    added: dict[str, str] = {}
    if "date" not in lowered:
        added["Date"] = format_http_date(now)
        lowered["date"] = added["Date"]
    added["Digest"] = compute_digest(body)
    lowered["digest"] = added["Digest"]
    names = default_signed_headers(lowered) if signed_headers is None else _normalise_signed_headers(signed_headers)
    try:
        signing_string = build_signing_string(method, url, lowered, names)
    except SignatureError as exc:
        raise SigningError("a header to sign is missing from the request", details=exc.details) from None
    added["Signature"] = _signature_header(key_id, names, _rsa_sign(key, signing_string))
    return added


def parse_signature_header(value: str) -> dict[str, str]:
    """Parse a draft-cavage ``Signature`` header into its parameters (``keyId``, ``algorithm``, ``headers``...).

    Raises
    ------
    SignatureError
        The header is not a comma-separated list of ``name="value"`` parameters, or a parameter repeats.
    """
    params: dict[str, str] = {}
    pos = 0
    text = value.strip()
    while pos < len(text):
        match = _PARAM_RE.match(text, pos)
        if match is None or match.end() == pos:
            raise SignatureError("malformed Signature header", reason="malformed_signature")
        name, param_value = match.group(1), match.group(2)
        if name in params:
            raise SignatureError("malformed Signature header", reason="malformed_signature")
        params[name] = param_value
        pos = match.end()
    if not params:
        raise SignatureError("malformed Signature header", reason="malformed_signature")
    return params


def _check_digest(lowered: Mapping[str, str], raw_body: bytes, covered: Sequence[str]) -> None:
    digest_header = lowered.get("digest")
    if digest_header is None:
        raise SignatureError("Digest header missing", reason="missing_digest", header="digest")
    expected = compute_digest(raw_body)[len(_DIGEST_PREFIX) :]
    # RFC 3230 allows several algorithms: ``SHA-256=..,MD5=..``; we need (and only trust) SHA-256.
    candidates = [
        item.strip()[len(_DIGEST_PREFIX) :]
        for item in digest_header.split(",")
        if item.strip().upper().startswith(_DIGEST_PREFIX)
    ]
    if len(candidates) != 1:
        raise SignatureError("Digest header has no single SHA-256 value", reason="digest_mismatch", header="digest")
    if not hmac.compare_digest(candidates[0].encode("ascii", "replace"), expected.encode("ascii")):
        raise SignatureError("Digest does not match the body", reason="digest_mismatch", header="digest")
    if raw_body and "digest" not in covered:
        raise SignatureError("Digest is not covered by the signature", reason="digest_not_signed", header="digest")


def _decode_signature(value: str) -> bytes:
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise SignatureError("malformed Signature header", reason="malformed_signature") from None
    if not raw:
        raise SignatureError("malformed Signature header", reason="malformed_signature")
    return raw


def verify_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | str | None,
    *,
    public_key_pem: str | bytes,
    required_headers: Sequence[str] = (),
) -> str:
    """Verify a draft-cavage ``rsa-sha256`` signature and the ``Digest`` of a request.

    Checks, in order: a well-formed ``Signature`` header with ``keyId``, ``algorithm="rsa-sha256"``,
    ``headers`` and ``signature``; every ``required_headers`` name is covered; ``Digest`` is present, has a
    SHA-256 value matching the body, and is covered whenever the body is not empty; every covered header is in
    the request; the RSA PKCS#1 v1.5 / SHA-256 signature verifies. STET requires ``Digest`` on every request
    (empty body included), so an absent ``Digest`` is refused.

    Parameters
    ----------
    method, url, headers, body
        The request as received (header lookup is case-insensitive; ``url`` path and query as sent).
    public_key_pem
        The signer's RSA public key, as a ``PUBLIC KEY`` PEM or an X.509 certificate PEM.
    required_headers
        Names that the signature must cover (e.g. ``("(request-target)", "date", "digest", "x-request-id")``).

    Returns
    -------
    str
        The ``keyId`` of the verified signature.

    Raises
    ------
    SignatureError
        Any check fails (see ``SignatureError.reason``). An unusable ``public_key_pem`` raises it with
        ``reason="bad_key"``.
    """
    lowered = _lower_headers(headers, error=SignatureError)
    raw_signature = lowered.get("signature")
    if raw_signature is None or not raw_signature.strip():
        raise SignatureError("Signature header missing", reason="missing_signature", header="signature")
    params = parse_signature_header(raw_signature)
    key_id = params.get("keyId")
    signature_b64 = params.get("signature")
    covered_raw = params.get("headers")
    if not key_id or not signature_b64 or covered_raw is None:
        raise SignatureError("malformed Signature header", reason="malformed_signature")
    if params.get("algorithm", "").lower() != ALGORITHM:
        raise SignatureError("unsupported signature algorithm", reason="unsupported_algorithm")
    covered = covered_raw.lower().split()
    if not covered or len(set(covered)) != len(covered):
        raise SignatureError("malformed Signature header", reason="malformed_signature")
    for name in required_headers:
        if name.lower() not in covered:
            raise SignatureError(
                "required header not covered by the signature", reason="required_header_not_signed", header=name.lower()
            )
    raw_body = _body_bytes(body)
    _check_digest(lowered, raw_body, covered)
    signing_string = build_signing_string(method, url, lowered, covered)
    signature = _decode_signature(signature_b64)
    try:
        public_key = _cached_public_key(_pem_bytes(public_key_pem))
    except SigningError:
        raise SignatureError("verification key is unusable", reason="bad_key") from None
    try:
        public_key.verify(signature, signing_string.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise SignatureError("signature does not verify", reason="bad_signature") from None
    return key_id


# --------------------------------------------------------------------------------------------------------------
# requests auth
# --------------------------------------------------------------------------------------------------------------


class BankSignatureAuth(requests.auth.AuthBase):
    """``requests`` auth that signs each request in place (``Date``, ``Digest``, ``Signature``).

    The key is fetched from the provider and parsed **once**, at construction; per request the work is one SHA-256,
    a few string joins and the RSA operation. Override the small steps (:meth:`add_date`, :meth:`add_digest`,
    :meth:`select_headers`, :meth:`build_signing_string`, :meth:`sign`, :meth:`signature_header`) to adapt a bank.

    Parameters
    ----------
    key_id
        ``keyId`` to send (BPCE: the client_id). Required with ``private_key_pem``; must be omitted with
        ``key_provider`` (the provider owns it).
    key_provider
        Source of keyId and private key.
    private_key_pem
        RSA private key PEM, for the simple case.
    signed_headers
        Fixed list of covered headers; ``None`` (default) uses :func:`default_signed_headers` per request.

    Raises
    ------
    SigningError
        Missing/empty key_id, both or neither of ``key_provider``/``private_key_pem``, unreadable or non-RSA key,
        invalid ``signed_headers``. Messages never contain key material.
    """

    def __init__(
        self,
        *,
        key_id: str | None = None,
        key_provider: KeyProvider | None = None,
        private_key_pem: str | bytes | None = None,
        signed_headers: Sequence[str] | None = None,
    ) -> None:
        provider = self._resolve_provider(key_id=key_id, key_provider=key_provider, private_key_pem=private_key_pem)
        resolved_id = provider.key_id
        if not isinstance(resolved_id, str) or not resolved_id.strip() or '"' in resolved_id:
            raise SigningError("signing key_id is empty or invalid", details={"reason": "bad_key_id"})
        key = provider.private_key()
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SigningError("signing key is not an RSA key", details={"reason": "not_rsa"})
        self.key_id: str = resolved_id
        self._private_key = key
        self.signed_headers: list[str] | None = (
            None if signed_headers is None else _normalise_signed_headers(signed_headers)
        )

    @staticmethod
    def _resolve_provider(
        *, key_id: str | None, key_provider: KeyProvider | None, private_key_pem: str | bytes | None
    ) -> KeyProvider:
        if key_provider is not None:
            if private_key_pem is not None:
                raise SigningError(
                    "give exactly one of key_provider or private_key_pem", details={"reason": "bad_configuration"}
                )
            if key_id is not None:
                raise SigningError("key_id comes from the key_provider", details={"reason": "bad_configuration"})
            return key_provider
        if private_key_pem is None:
            raise SigningError(
                "give exactly one of key_provider or private_key_pem", details={"reason": "bad_configuration"}
            )
        if key_id is None:
            raise SigningError("signing key_id is empty", details={"reason": "empty_key_id"})
        return StaticKeyProvider(key_id=key_id, private_key_pem=private_key_pem)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_id={self.key_id!r}, signed_headers={self.signed_headers!r})"

    # -- overridable steps -------------------------------------------------------------------------------------

    def add_date(self, request: requests.PreparedRequest) -> None:
        """Set ``Date`` (RFC 1123 GMT) unless the request already has one."""
        if "Date" not in request.headers:
            request.headers["Date"] = format_http_date()

    def add_digest(self, request: requests.PreparedRequest) -> None:
        """Set ``Digest`` over the raw body (always, the empty body included, as STET requires)."""
        request.headers["Digest"] = compute_digest(request.body)

    def select_headers(self, request: requests.PreparedRequest) -> list[str]:
        """Return the covered header names for this request (the fixed policy, else the STET default)."""
        if self.signed_headers is not None:
            return self.signed_headers
        return default_signed_headers(name.lower() for name in request.headers)

    def build_signing_string(self, request: requests.PreparedRequest, signed_headers: Sequence[str]) -> str:
        """Build the signing string from the prepared request (method, URL as sent, headers)."""
        lowered = {name.lower(): value for name, value in request.headers.items()}
        try:
            return build_signing_string(request.method or "GET", request.url or "", lowered, signed_headers)
        except SignatureError as exc:
            raise SigningError("a header to sign is missing from the request", details=exc.details) from None

    def sign(self, signing_string: str) -> str:
        """Return the base64 RSA PKCS#1 v1.5 / SHA-256 signature of ``signing_string``."""
        return _rsa_sign(self._private_key, signing_string)

    def signature_header(self, signed_headers: Sequence[str], signature_b64: str) -> str:
        """Render the ``Signature`` header value."""
        return _signature_header(self.key_id, signed_headers, signature_b64)

    # -- entry point -------------------------------------------------------------------------------------------

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Sign ``request`` in place and return it."""
        self.add_date(request)
        self.add_digest(request)
        names = self.select_headers(request)
        signing_string = self.build_signing_string(request, names)
        request.headers["Signature"] = self.signature_header(names, self.sign(signing_string))
        return request
