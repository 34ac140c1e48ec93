"""draft-cavage HTTP Signatures (``rsa-sha256``) for STET / BPCE 89C3 requests.

Public surface: :func:`sign_request`, :func:`verify_request`, :class:`BankSignatureAuth` (``requests`` auth),
:class:`SignatureError`, the key port :class:`KeyProvider` with :class:`StaticKeyProvider`, and the bank's signed
responses (:func:`verify_response` against :class:`PinnedCertificates`, :func:`sign_response` for the sandbox).
"""

from __future__ import annotations

from aisp.signing.http_signature import (
    ALGORITHM,
    EMPTY_BODY_DIGEST,
    BankSignatureAuth,
    SignatureError,
    build_signing_string,
    compute_digest,
    default_signed_headers,
    format_http_date,
    parse_signature_header,
    request_target,
    sign_request,
    verify_request,
)
from aisp.signing.keys import KeyProvider, StaticKeyProvider, load_private_key, load_public_key
from aisp.signing.response import (
    PinnedCertificates,
    certificate_fingerprint,
    response_key_id,
    sign_response,
    verify_response,
)

__all__ = [
    "ALGORITHM",
    "EMPTY_BODY_DIGEST",
    "BankSignatureAuth",
    "KeyProvider",
    "PinnedCertificates",
    "SignatureError",
    "StaticKeyProvider",
    "build_signing_string",
    "certificate_fingerprint",
    "compute_digest",
    "default_signed_headers",
    "format_http_date",
    "load_private_key",
    "load_public_key",
    "parse_signature_header",
    "request_target",
    "response_key_id",
    "sign_request",
    "sign_response",
    "verify_request",
    "verify_response",
]
