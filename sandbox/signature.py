"""Signatures both ways: the TPP's requests are checked, the bank's answers are sealed.

Requests: the cryptography (draft-cavage ``rsa-sha256``, ``Digest`` against the body) is
:func:`aisp.signing.verify_request`; the sandbox decides what the signature must cover (``(request-target)``,
``x-request-id``, ``digest`` and every ``psu-*`` header sent) and which ``keyId`` is acceptable (BPCE: the client_id).

Answers: :class:`ResponseSeal` signs every AISP answer as BPCE does (keyId
``https://www.<code>.sandbox.api.89c3.com/api/keyid/certificate_<sha256 hex>``, headers ``digest date content-type
x-request-id (request-target)``, plus ``Digest``), with the sandbox's bank seal certificate, which
``bank-credentials.json`` pins for the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aisp.signing import SignatureError, certificate_fingerprint, sign_response, verify_request
from sandbox.store import TppRegistration
from sandbox.web import Request, Response

ALWAYS_SIGNED = ("(request-target)", "x-request-id", "digest")
PSU_PREFIX = "psu-"

# Short ErrorModel messages per verifier reason (they never echo header values).
_MESSAGES = {
    "missing_signature": "Missing request header 'Signature'",
    "missing_digest": "Missing request header 'Digest'",
    "digest_mismatch": "Digest does not match the request body",
    "required_header_not_signed": "Signature does not cover a required header",
    "unsupported_algorithm": "Signature algorithm must be rsa-sha256",
    "bad_signature": "Signature verification failed",
}


class SignatureRejected(Exception):
    """The request's signature or digest is not acceptable; ``message`` fits an ErrorModel."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


def required_headers(headers: Mapping[str, str]) -> tuple[str, ...]:
    """What the signature must cover for a request with these (lower-case) headers."""
    return ALWAYS_SIGNED + tuple(name for name in headers if name.startswith(PSU_PREFIX))


def check_signature(tpp: TppRegistration, *, method: str, url: str, headers: Mapping[str, str], body: bytes) -> None:
    """Verify ``Digest`` and ``Signature`` of a request with the TPP's registered QSealC key.

    Parameters
    ----------
    tpp
        The registered TPP (its public key PEM is parsed once by the verifier and cached).
    method, url, headers, body
        The request as received; ``headers`` keyed by lower-case name, ``url`` with the path exactly as sent.

    Raises
    ------
    SignatureRejected
        Any check fails, or the keyId is not the registered one.
    """
    for name, reason in (("signature", "missing_signature"), ("digest", "missing_digest")):
        if not headers.get(name):
            raise SignatureRejected(_MESSAGES[reason], reason=reason)
    try:
        key_id = verify_request(
            method,
            url,
            headers,
            body,
            public_key_pem=tpp.qseal_public_key_pem,
            required_headers=required_headers(headers),
        )
    except SignatureError as exc:
        raise SignatureRejected(_MESSAGES.get(exc.reason, "Invalid request signature"), reason=exc.reason) from None
    if key_id != tpp.key_id:
        raise SignatureRejected("Unknown signature keyId", reason="unknown_key_id")


@dataclass(frozen=True, slots=True)
class ResponseSeal:
    """The bank's answer-signing key and certificate."""

    private_key_pem: str
    certificate_pem: str

    def key_id(self, bank_code: str) -> str:
        """BPCE's keyId form on the 89C3 sandbox host of ``bank_code``."""
        fingerprint = certificate_fingerprint(self.certificate_pem)
        return f"https://www.{bank_code}.sandbox.api.89c3.com/api/keyid/certificate_{fingerprint}"

    def seal(self, bank_code: str, request: Request, response: Response) -> None:
        """Add ``Date``, ``Digest`` and ``Signature`` to ``response`` (the answer to ``request``), in place."""
        added = sign_response(
            request.method,
            request.url,
            dict(response.headers),
            response.body,
            key_id=self.key_id(bank_code),
            private_key_pem=self.private_key_pem,
        )
        response.headers.extend(added.items())
