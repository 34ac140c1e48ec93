"""The gateway's error hierarchy.

Every error the gateway raises on purpose derives from :class:`AispError`. Messages are written for engineers and
never carry secrets (tokens, codes, keys, full IBANs) or raw bank text; ``details`` holds structured, safe context.
HTTP status mapping happens in one place (``aisp.api.errors.ERROR_MAP``), never by matching on message text; the
status each branch answers is noted on the right (``tests/unit/test_errors.py`` keeps this drawing true)::

    AispError                                   500 unless a branch says otherwise
    ├── ConfigurationError                      the deployment is wrong
    ├── InvalidRequestError                     400
    │   ├── InvalidCursorError
    │   └── InvalidCompletionError
    ├── UnauthenticatedError                    401
    ├── ForbiddenError                          403
    │   └── UserTokenRequiredError
    ├── QuotaExhaustedError                     429
    ├── NotFoundError                           404
    │   ├── UnknownBankError
    │   ├── ConnectionNotFoundError
    │   └── AccountNotFoundError
    ├── ConflictError                           409
    │   ├── ConnectionNotUsableError
    │   │   ├── ConnectionPendingError
    │   │   ├── CompletionRequiredError
    │   │   └── ConnectionFailedError
    │   ├── IdempotencyKeyReusedError           422
    │   ├── RequestInProgressError
    │   ├── OAuthStateRejectedError             (the callback redirects instead)
    │   └── RefreshInProgressError
    ├── PersistenceError                        503 (DynamoDB)
    ├── TokenCryptoError
    │   ├── KeyServiceError                     503 (KMS)
    │   └── TokenIntegrityError
    ├── SigningError                            our request signature could not be made
    │   └── SignatureError                      (aisp.signing)
    ├── ConsentRejectedError                    403
    │   └── ConsentRequiredError
    ├── BankFeatureNotSupportedError            501
    ├── UpstreamError                           502: the bank failed
    │   ├── BankClientError                     the bank refused our request (4xx)
    │   │   ├── BankTokenInvalidError
    │   │   ├── ReauthRequiredError             409
    │   │   ├── ClientCredentialsRejectedError
    │   │   ├── BankAccessDeniedError           403
    │   │   ├── BankNotFoundError
    │   │   └── BankRateLimitedError            429
    │   ├── BankUnavailableError                503
    │   ├── BankNotImplementedError             501
    │   └── BankProtocolError                   the answer made no sense
    │       └── BankSignatureInvalidError       its signature did not verify
    ├── EventPublishError                       the refresher's event bus
    ├── FanoutError                             the refresher's fan-out queue
    └── TokenRefreshBatchError                  a refresher run ends with failures
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime


class AispError(Exception):
    """Base class of every error raised by the gateway on purpose.

    Parameters
    ----------
    message
        A constant, human-readable description; must not contain secrets or raw bank text.
    details
        Optional structured context that is safe to log (bank code, field names, request id...).
    """

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})


class ConfigurationError(AispError):
    """The deployment is misconfigured: a missing or invalid environment variable, secret field or data file."""


class InvalidRequestError(AispError):
    """The caller sent something we cannot act on (bad field, unknown bank, forged cursor...)."""


class InvalidCursorError(InvalidRequestError):
    """A pagination cursor is malformed, tampered with, expired, or was issued for another user or account."""

    def __init__(self, reason: str) -> None:
        # The message is the stable detail clients see; the reason (forged, expired...) is for the logs only.
        super().__init__("invalid_cursor", details={"field": "cursor", "reason": reason})


class InvalidCompletionError(InvalidRequestError):
    """A completion value that activates nothing: unknown, used, expired, or another user's (one answer for all)."""

    def __init__(self, reason: str) -> None:
        # The reason is for the logs only: the client gets the same answer whatever it is (no oracle).
        super().__init__("invalid completion", details={"reason": reason})
        self.reason = reason


class UnauthenticatedError(AispError):
    """The request carries no usable user identity (no JWT ``sub`` from the HTTP API authorizer)."""


class ForbiddenError(AispError):
    """The caller is authenticated but may not do this."""


class UserTokenRequiredError(ForbiddenError):
    """A route only the user's own app may call (connect, complete, consent, delete) got a server token."""


class QuotaExhaustedError(AispError):
    """An unattended read would exceed the bank's daily quota for this account and method; the bank is not called.

    ``retry_at`` is when the counter resets (the next Europe/Paris midnight), ``retry_after`` the seconds until then.
    """

    def __init__(
        self, message: str, *, retry_at: datetime, retry_after: int, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details={**(details or {}), "retry_at": retry_at.isoformat()})
        self.retry_at = retry_at
        self.retry_after = retry_after


class NotFoundError(AispError):
    """The requested resource does not exist for this user."""


class UnknownBankError(NotFoundError):
    """The bank code is well formed but no establishment of the registry has it."""


class ConnectionNotFoundError(NotFoundError):
    """The user has no connection to this bank."""


class AccountNotFoundError(NotFoundError):
    """The bank knows no such account for this user (STET 404 on an account resource)."""


class ConflictError(AispError):
    """A conditional write lost a race or the resource is not in the state the operation needs."""


class ConnectionNotUsableError(ConflictError):
    """The connection exists but its status cannot serve bank data (``details["connection_status"]`` says which)."""


class ConnectionPendingError(ConnectionNotUsableError):
    """The user's first login to this bank is not finished."""


class CompletionRequiredError(ConnectionNotUsableError):
    """The bank authorized the login, but the app has not completed the connection yet."""


class ConnectionFailedError(ConnectionNotUsableError):
    """The first login to this bank ended without a usable connection (``details["status_reason"]``)."""


class IdempotencyKeyReusedError(ConflictError):
    """An ``Idempotency-Key`` was sent again with a different request body."""


class RequestInProgressError(ConflictError):
    """A request with the same ``Idempotency-Key`` is still being processed."""


class OAuthStateRejectedError(ConflictError):
    """An OAuth ``state`` cannot be consumed: unknown (forged, or purged), already used, or expired.

    ``return_url`` is known when the state was ours (used or expired), so the browser can still be sent back.
    """

    def __init__(
        self,
        reason: str,
        *,
        return_url: str | None = None,
        bank_code: str | None = None,
        connection_id: str | None = None,
    ) -> None:
        details = {"reason": reason, "bank_code": bank_code, "connection_id": connection_id}
        super().__init__("oauth state rejected", details={k: v for k, v in details.items() if v is not None})
        self.reason = reason
        self.return_url = return_url
        self.bank_code = bank_code
        self.connection_id = connection_id


class PersistenceError(AispError):
    """The data store failed for a reason other than a lost condition."""


class TokenCryptoError(AispError):
    """Stored bank tokens could not be encrypted or decrypted."""


class KeyServiceError(TokenCryptoError):
    """KMS refused or failed a data-key operation (unavailable, throttled, key disabled, access denied)."""


class TokenIntegrityError(TokenCryptoError):
    """A token ciphertext is malformed or does not authenticate for this record (tampered, or moved elsewhere)."""


class SigningError(AispError):
    """Request signing could not be set up or performed (bad key, bad configuration)."""


class ConsentRejectedError(AispError):
    """The bank refused access because the PSU has not consented to this data (STET 403 on a resource)."""


class ConsentRequiredError(ConsentRejectedError):
    """The bank refused access and no consent was ever submitted through the gateway for this connection."""


class BankFeatureNotSupportedError(AispError):
    """The establishment does not offer this feature (registry capability, or the bank answered 501)."""


class UpstreamError(AispError):
    """The bank answered with an error, or did not answer.

    Parameters
    ----------
    message
        Constant description (never the bank's own text).
    status
        HTTP status the bank returned, or ``None`` when there was no response (timeout, connection error).
    bank_code
        The BPCE establishment code the call went to.
    request_id
        The ``X-Request-ID`` we sent, to correlate with the bank's logs.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        bank_code: str | None = None,
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        merged = {"status": status, "bank_code": bank_code, "request_id": request_id, **(details or {})}
        super().__init__(message, details={k: v for k, v in merged.items() if v is not None})
        self.status = status
        self.bank_code = bank_code
        self.request_id = request_id


class BankClientError(UpstreamError):
    """The bank answered 4xx: our request or our credentials are at fault."""


class BankTokenInvalidError(BankClientError):
    """The bank rejected the access token (401): it is expired or revoked; refresh it or re-authenticate."""


class ReauthRequiredError(BankClientError):
    """The refresh token is no longer accepted (``invalid_grant``): the PSU must authenticate again."""


class ClientCredentialsRejectedError(BankClientError):
    """The bank's token endpoint refused *our* client (``invalid_client``, ``unauthorized_client``): a deployment
    problem (certificate, client id), never a reason to forget a user's tokens."""


class BankAccessDeniedError(BankClientError):
    """The bank answered 403 for a resource: not consented, or not allowed for this PSU."""


class BankNotFoundError(BankClientError):
    """The bank answered 404 for a resource that is not a list (e.g. an unknown account id)."""


class BankRateLimitedError(BankClientError):
    """The bank throttled us: 429, or 403 with the BPCE code ``TMRQ``.

    ``retry_after`` is in seconds when the bank said so, else ``None``.
    """

    def __init__(self, message: str, *, retry_after: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        if retry_after is not None:
            self.details["retry_after"] = retry_after


class BankUnavailableError(UpstreamError):
    """The bank is down or slow: 5xx, timeout or connection failure. Safe to retry later."""


class BankNotImplementedError(UpstreamError):
    """The bank answered 501 (or its ``NIMP`` code): it cannot provide this resource here. Final, never retried."""


class BankProtocolError(UpstreamError):
    """The bank answered 2xx with a body we cannot understand (not JSON, missing required structure)."""


class BankSignatureInvalidError(BankProtocolError):
    """The bank's answer does not verify (its ``Signature``/``Digest`` by a pinned certificate, or the echo of our
    ``X-Request-ID``) and the bank's policy is ``enforce``: the data is not used."""


class RefreshInProgressError(ConflictError):
    """Another refresher holds the connection's refresh lease and did not finish in time; retry shortly."""


class EventPublishError(AispError):
    """The lifecycle event bus refused or failed a ``PutEvents`` entry."""


class FanoutError(AispError):
    """The refresher could not hand a share of its work to the fan-out queue."""


class TokenRefreshBatchError(AispError):
    """A refresher run finished with unexpected failures (raised once, at the end, so the Errors alarm fires).

    ``failed_ids`` are connection ids (never tokens); transient bank errors (429, 5xx, timeouts) are retried with
    backoff and counted by the ``TokenRefreshFailed`` metric, not raised (see README, "Token refresher").
    """

    def __init__(self, failed_ids: list[str], *, details: dict[str, Any] | None = None) -> None:
        super().__init__(
            "token refresh run had unexpected failures",
            details={"failed": len(failed_ids), "failed_ids": failed_ids[:50], **(details or {})},
        )
        self.failed_ids = failed_ids
