"""Translate bank HTTP answers and transport failures into :mod:`aisp.errors` (NOTES §3, STYLE §5).

Messages are constant strings. ``details`` carries only safe context: the operation name, the HTTP status, the
X-Request-ID we sent, and a BPCE short code when it is one of the known ones (``NAAC``, ``TMRQ``, ``INTE``,
``NIMP``) or a standard OAuth2 error code. Bank free text, tokens and URLs never end up in an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from http import HTTPStatus
from typing import Final

import requests

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
    ReauthRequiredError,
    UpstreamError,
)
from aisp.stet.schemas import StetErrorBody

__all__ = [
    "BpceCode",
    "Endpoint",
    "ErrorInfo",
    "error_for_response",
    "error_for_transport",
    "parse_error_info",
    "parse_retry_after",
]

_MAX_ERROR_BODY: Final = 64 * 1024
_MAX_RETRY_AFTER: Final = 24 * 3600
# A token endpoint naming the *client* (RFC 6749 §5.2) refuses our deployment, not the user's grant.
_CLIENT_REFUSED: Final = frozenset({"invalid_client", "unauthorized_client"})
_OAUTH_CODES: Final = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_token",
        "unsupported_token_type",
        "access_denied",
        "server_error",
        "temporarily_unavailable",
    }
)


class BpceCode(StrEnum):
    """BPCE short codes carried in ``message`` (or ``error``) of the STET ErrorModel."""

    NAAC = "NAAC"  # 404: no eligible/authorised account → empty list on GET /accounts
    TMRQ = "TMRQ"  # 403: too many requests → rate limited
    INTE = "INTE"  # 500: internal error
    NIMP = "NIMP"  # not implemented


class Endpoint(StrEnum):
    """Which kind of endpoint answered: the mapping differs for OAuth /token."""

    AISP = "aisp"
    TOKEN = "token"  # noqa: S105 - an endpoint name, not a secret
    REVOKE = "revoke"


_CODE_RES: Final = {code: re.compile(rf"(?<![A-Za-z0-9]){code.value}(?![A-Za-z0-9])") for code in BpceCode}


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What we safely extracted from an error body."""

    bpce_code: BpceCode | None = None
    oauth_error: str | None = None


def parse_error_info(response: requests.Response) -> ErrorInfo:
    """Extract a known BPCE code or an RFC 6749 error code from an error body; never raises.

    Bodies may be a STET ErrorModel, an OAuth2 error, empty, HTML or garbage.
    """
    try:
        content = response.content[:_MAX_ERROR_BODY]
    except requests.RequestException:
        return ErrorInfo()
    if not content or not content.strip():
        return ErrorInfo()
    try:
        body = StetErrorBody.model_validate_json(content)
    except ValueError:
        return ErrorInfo()
    code: BpceCode | None = None
    for text in (body.message, body.error):
        if text:
            code = next((c for c, pattern in _CODE_RES.items() if pattern.search(text)), None)
            if code is not None:
                break
    oauth_error = body.error.strip().lower() if body.error else None
    return ErrorInfo(bpce_code=code, oauth_error=oauth_error if oauth_error in _OAUTH_CODES else None)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> int | None:
    """Parse ``Retry-After`` (delta-seconds or HTTP-date) into whole seconds ≥ 0; unparseable → ``None``."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return min(int(text), _MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(0, int(delta + 0.999)), _MAX_RETRY_AFTER)


def error_for_response(
    response: requests.Response,
    *,
    operation: str,
    endpoint: Endpoint,
    bank_code: str,
    request_id: str | None,
) -> UpstreamError:
    """Map a non-2xx bank response to the exception to raise (the caller raises it).

    Mapping: 429 and 403+``TMRQ`` → :class:`BankRateLimitedError`; on /token, 400 ``invalid_grant`` and 401/403 →
    :class:`ReauthRequiredError`; 401 → :class:`BankTokenInvalidError`; 403 → :class:`BankAccessDeniedError`;
    404 → :class:`BankNotFoundError`; 501, or any error with BPCE's ``NIMP`` → :class:`BankNotImplementedError`
    (final: STET's 501 is "implemented, but cannot provide a result in this context"); other 4xx →
    :class:`BankClientError`; other 5xx → :class:`BankUnavailableError`; anything else (1xx/3xx) →
    :class:`BankProtocolError`. (404 ``NAAC`` on GET /accounts is handled by the client.)
    """
    status = response.status_code
    info = parse_error_info(response)
    details: dict[str, str] = {"operation": operation}
    if info.bpce_code is not None:
        details["bank_error_code"] = info.bpce_code.value
    if info.oauth_error is not None:
        details["oauth_error"] = info.oauth_error

    if status == HTTPStatus.TOO_MANY_REQUESTS or (status == HTTPStatus.FORBIDDEN and info.bpce_code is BpceCode.TMRQ):
        return BankRateLimitedError(
            "bank rate limit reached",
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            status=status,
            bank_code=bank_code,
            request_id=request_id,
            details=details,
        )
    error_class, message = _classify(status, endpoint, info)
    return error_class(message, status=status, bank_code=bank_code, request_id=request_id, details=details)


_BY_STATUS: Final[dict[int, tuple[type[UpstreamError], str]]] = {
    HTTPStatus.UNAUTHORIZED: (BankTokenInvalidError, "bank rejected the access token"),
    HTTPStatus.FORBIDDEN: (BankAccessDeniedError, "bank denied access to the resource"),
    HTTPStatus.NOT_FOUND: (BankNotFoundError, "bank resource not found"),
}


def _classify(status: int, endpoint: Endpoint, info: ErrorInfo) -> tuple[type[UpstreamError], str]:
    if status == HTTPStatus.NOT_IMPLEMENTED or (status >= HTTPStatus.BAD_REQUEST and info.bpce_code is BpceCode.NIMP):
        return BankNotImplementedError, "bank does not provide this resource"
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return BankUnavailableError, "bank server error"
    if endpoint is Endpoint.TOKEN and (refusal := _token_refusal(status, info)) is not None:
        return refusal
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if HTTPStatus.BAD_REQUEST <= status < HTTPStatus.INTERNAL_SERVER_ERROR:
        return BankClientError, "bank rejected the request"
    return BankProtocolError, "bank answered with an unexpected status"


def _token_refusal(status: int, info: ErrorInfo) -> tuple[type[UpstreamError], str] | None:
    """A token endpoint's 4xx that refuses our client or the user's grant (``None``: neither)."""
    if info.oauth_error in _CLIENT_REFUSED:
        return ClientCredentialsRejectedError, "bank refused our client credentials"
    if status in {HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN} or (
        status == HTTPStatus.BAD_REQUEST and info.oauth_error == "invalid_grant"
    ):
        return ReauthRequiredError, "bank refused the grant; the PSU must authenticate again"
    return None


def error_for_transport(
    exc: requests.RequestException, *, operation: str, bank_code: str, request_id: str | None
) -> BankUnavailableError:
    """Map a ``requests`` failure (timeout, connection, TLS...) to :class:`BankUnavailableError`.

    Only the exception *type* goes into ``details``; its text may contain URLs with query strings.
    """
    if isinstance(exc, requests.Timeout):
        kind = "timeout"
    elif isinstance(exc, requests.exceptions.SSLError):
        kind = "tls"
    elif isinstance(exc, requests.ConnectionError):
        kind = "connection"
    else:
        kind = "transport"
    return BankUnavailableError(
        "bank unreachable",
        bank_code=bank_code,
        request_id=request_id,
        details={"operation": operation, "failure": kind, "exception": type(exc).__name__},
    )
