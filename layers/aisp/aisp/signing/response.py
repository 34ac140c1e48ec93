"""The bank's signed responses: verified against pinned certificates, and signed (the offline sandbox's side).

BPCE signs each answer (draft-cavage, ``rsa-sha256``) over ``digest date content-type x-request-id
(request-target)``, the target being the request it answers, with a ``keyId`` ending in the SHA-256 of its
certificate (NOTES §2). :func:`verify_response` picks the certificate by that fingerprint among those **pinned** in
configuration, never fetching the keyId URL; :func:`sign_response` is the bank side. Design and the ``off`` / ``log``
/ ``enforce`` policy: ``docs/banks.md`` (Signed answers).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from aisp.signing.http_signature import SignatureError, parse_signature_header, sign_request, verify_request

__all__ = [
    "RESPONSE_SIGNED_HEADERS",
    "PinnedCertificates",
    "certificate_fingerprint",
    "response_key_id",
    "sign_response",
    "verify_response",
]

# What BPCE covers, in its order; content-type only when the answer has one (a 201 or 204 has no body).
RESPONSE_SIGNED_HEADERS: Final = ("digest", "date", "content-type", "x-request-id", "(request-target)")
# What a response signature must cover for us to trust it: the body, our request id and our request.
_REQUIRED: Final = ("digest", "x-request-id", "(request-target)")
_KEY_ID_RE: Final = re.compile(r"^https://[^\s\"]+/certificate_(?P<fingerprint>[0-9A-Fa-f]{64})$")


def certificate_fingerprint(certificate_pem: str | bytes) -> str:
    """SHA-256 of the certificate's DER encoding, lower-case hex (the suffix of BPCE's keyId).

    Raises
    ------
    SignatureError
        ``reason="bad_key"``: not a PEM certificate.
    """
    pem = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise SignatureError("pinned certificate is not a PEM certificate", reason="bad_key") from None
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


def response_key_id(origin: str, certificate_pem: str | bytes) -> str:
    """BPCE's keyId for a signing certificate: ``{origin}/api/keyid/certificate_{sha256 hex}``."""
    return f"{origin.rstrip('/')}/api/keyid/certificate_{certificate_fingerprint(certificate_pem)}"


@dataclass(frozen=True, slots=True)
class PinnedCertificates:
    """The bank certificates we trust, by fingerprint (PEMs from the registry and the credentials secret)."""

    by_fingerprint: Mapping[str, str]

    @classmethod
    def of(cls, pems: Iterable[str]) -> PinnedCertificates:
        """Index PEM certificates by fingerprint (duplicates collapse)."""
        return cls({certificate_fingerprint(pem): pem for pem in pems})

    def __bool__(self) -> bool:
        return bool(self.by_fingerprint)

    def for_key_id(self, key_id: str) -> str:
        """The pinned certificate a keyId names.

        Raises
        ------
        SignatureError
            ``malformed_key_id`` when the keyId is not ``https://.../certificate_<64 hex>``; ``unpinned_key`` when
            no pinned certificate has that fingerprint.
        """
        match = _KEY_ID_RE.match(key_id)
        if match is None:
            raise SignatureError("response keyId does not name a certificate fingerprint", reason="malformed_key_id")
        pem = self.by_fingerprint.get(match["fingerprint"].lower())
        if pem is None:
            raise SignatureError("response is signed by a certificate we did not pin", reason="unpinned_key")
        return pem


def sign_response(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    key_id: str,
    private_key_pem: str | bytes,
    now: datetime | None = None,
) -> dict[str, str]:
    """Sign an answer as BPCE does; return the headers to add (``Date`` if absent, ``Digest``, ``Signature``).

    ``method`` and ``url`` are those of the request being answered; ``headers`` are the answer's (its
    ``X-Request-ID`` echo included).
    """
    present = {name.lower() for name in headers} | {"date", "digest"}
    covered = [name for name in RESPONSE_SIGNED_HEADERS if name in present or name.startswith("(")]
    return sign_request(
        method, url, headers, body, key_id=key_id, private_key_pem=private_key_pem, signed_headers=covered, now=now
    )


def verify_response(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    request_id: str,
    pinned: PinnedCertificates,
) -> str:
    """Verify a bank answer: ``Signature`` by a pinned certificate over our request, ``Digest``, our request id.

    Parameters
    ----------
    method, url
        Our request, as sent (the ``(request-target)`` the bank signed).
    headers, body
        The answer's headers and raw body.
    request_id
        The ``X-Request-ID`` we sent: the answer must echo it, and sign it.

    Returns
    -------
    str
        The fingerprint of the certificate that verified it.

    Raises
    ------
    SignatureError
        With ``reason``: ``missing_signature``, ``malformed_signature``, ``malformed_key_id``, ``unpinned_key``,
        ``required_header_not_signed``, ``missing_digest``, ``digest_mismatch``, ``bad_signature``,
        ``request_id_mismatch``.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    if lowered.get("x-request-id") != request_id:
        raise SignatureError("response does not echo our X-Request-ID", reason="request_id_mismatch")
    signature = lowered.get("signature")
    if not signature:
        raise SignatureError("response is not signed", reason="missing_signature", header="signature")
    key_id = parse_signature_header(signature).get("keyId", "")
    certificate = pinned.for_key_id(key_id)
    verify_request(method, url, lowered, body, public_key_pem=certificate, required_headers=_REQUIRED)
    return certificate_fingerprint(certificate)
