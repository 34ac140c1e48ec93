"""OpenAPI response declarations shared by the HTTP functions' routes (``responses=`` of the route decorators).

The success response's schema comes from each route's return annotation (Powertools fills it in). Errors are RFC 9457
problems (``application/problem+json``, :class:`~aisp.models.problem.Problem`) whose ``code`` says which one,
except the answers API Gateway gives by itself (``application/json {"message": ...}``,
:class:`~aisp.models.problem.GatewayError`): a status both can give is declared as
:class:`~aisp.models.problem.ErrorResponse`, the union of the two, so that a generated client reads either.
``scripts/export_openapi.py`` merges the functions' documents into ``docs/openapi.json`` and adds the ``default``
answer (:data:`DEFAULT_RESPONSE`) to every operation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from aisp.api.errors import PROBLEM_CONTENT_TYPE
from aisp.models.problem import ErrorResponse, Problem

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

__all__ = [
    "ACCOUNT_ERRORS",
    "BANK_ERRORS",
    "DEFAULT_RESPONSE",
    "ERROR_CODES",
    "GATEWAY_ANSWERS",
    "RATE_LIMIT_HEADERS",
    "SERVER_TOKEN_OPERATIONS",
    "responses",
]

GATEWAY_CONTENT_TYPE: Final = "application/json"
# Which codes each status carries (the problem's ``code``), for the document's readers.
ERROR_CODES: Final[dict[int, str]] = {
    400: "validation_error: a path, query, header or body field is invalid (`errors` lists them; detail "
    "`invalid_cursor` for a cursor; `Aisp-User` missing or invalid with a server token, or sent with a user token; "
    "a forwarded `PSU-IP-Address` that is not an IP address); invalid_completion: the completion value is unknown, "
    "used, expired or another user's",
    401: "unauthenticated: the token has no `sub`",
    403: "consent_required (no consent submitted yet) or account_not_consented (the consent does not cover it); "
    "user_token_required (a server token on a route only the user's own app may call, or an attended-proxy token "
    "where the deployment does not trust forwarded addresses)",
    404: "bank_not_found, connection_not_found, account_not_found or not_found",
    409: "reauth_required (the user must log in to the bank again), connection_pending (the first login is not "
    "finished), completion_required (the app has not completed the connection), connection_failed (connect "
    "again), request_in_progress (the first request with this Idempotency-Key still runs: retry after Retry-After) "
    "or conflict",
    422: "idempotency_key_reused (same Idempotency-Key, different body)",
    429: "bank_rate_limited (see Retry-After); quota_exhausted (a server token's read would exceed the bank's "
    "daily unattended quota for this account and method; the bank is not called: retry_at and Retry-After say when "
    "it resets, the next Europe/Paris midnight)",
    501: "bank_feature_not_supported",
    502: "bank_unavailable (the bank answered something unusable) or bank_signature_invalid",
    503: "bank_unavailable (the bank is down or timed out) or service_unavailable (our data store or key service is "
    "throttled or down; nothing was written)",
}
# The statuses API Gateway answers by itself on any route (then `{"message": ...}`, application/json).
GATEWAY_ANSWERS: Final[dict[int, str]] = {
    401: 'API Gateway\'s JWT authorizer: {"message": "Unauthorized"} for a missing, invalid or expired token',
    404: 'API Gateway: {"message": "Not Found"} when no route matches the path',
    429: 'API Gateway: {"message": "Too Many Requests"} when the API\'s own throttling limit is hit',
    503: 'API Gateway: {"message": "Service Unavailable"} when the function timed out',
}
_RETRY_AFTER: Final = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer", "minimum": 0}}
}
_SCHEMAS: Final = "#/components/schemas/"
# Every operation's other answers (scripts/export_openapi.py adds it: Powertools takes integer statuses only).
DEFAULT_RESPONSE: Final[dict[str, Any]] = {
    "description": "Any other error. 500 internal_error: a bug of ours (quote the request_id); or API Gateway's own "
    'answer, {"message": ...}: 500 when a function failed, 413 for a body over its limit, 503 or 504 when a '
    "function timed out, 429 when throttled",
    "content": {
        media: {"schema": {"$ref": f"{_SCHEMAS}{ErrorResponse.__name__}"}}
        for media in (PROBLEM_CONTENT_TYPE, GATEWAY_CONTENT_TYPE)
    },
}
# The reads the fintech's backend may make with a server token for the user in Aisp-User (every other route with a
# JWT is the user's own); scripts/export_openapi.py gives them both security schemes and the Aisp-User header.
SERVER_TOKEN_OPERATIONS: Final = frozenset(
    {
        "listConnections",
        "getConnection",
        "listAllAccounts",
        "listAccounts",
        "getBalances",
        "listTransactions",
        "listTrustedBeneficiaries",
        "getIdentity",
        "getQuota",
        "syncTransactions",
    }
)
# On an unattended answer (server token, the user absent): what the bank's daily quota has left.
RATE_LIMIT_HEADERS: Final = {
    "RateLimit": {
        "description": 'Unattended answers only (IETF RateLimit fields): `"unattended";r=<reads left today of the '
        "counter this request used with the fewest>;t=<seconds until the reset, the next Europe/Paris midnight>`",
        "schema": {"type": "string"},
    },
    "RateLimit-Policy": {
        "description": 'Unattended answers only: `"unattended";q=<reads a day per account and method>;w=<seconds in '
        "this Paris day>`",
        "schema": {"type": "string"},
    },
}
# Every route that calls a bank for a connection.
BANK_ERRORS: Final = (400, 401, 403, 404, 409, 429, 502, 503)
ACCOUNT_ERRORS: Final = (*BANK_ERRORS, 501)


def responses(
    errors: Iterable[int], *, status: int = 200, description: str = "OK", content: dict[str, Any] | None = None
) -> dict[int, OpenAPIResponse]:
    """``{status: success, 401: ..., <error status>: problem...}`` for the decorator of a route behind the JWT.

    ``content`` overrides the success body (default: the route's return annotation, as JSON). A status API Gateway
    can also answer (:data:`GATEWAY_ANSWERS`) is an :class:`~aisp.models.problem.ErrorResponse` in both media types.
    """
    declared: dict[int, Any] = {status: {"description": description}}
    if content is not None:
        declared[status]["content"] = content
    for code in sorted({401, *errors}):
        gateway = GATEWAY_ANSWERS.get(code)
        entry: dict[str, Any] = {
            "description": ERROR_CODES[code] if gateway is None else f"{ERROR_CODES[code]}; or {gateway}",
            "content": {PROBLEM_CONTENT_TYPE: {"model": Problem}}
            if gateway is None
            else {media: {"model": ErrorResponse} for media in (PROBLEM_CONTENT_TYPE, GATEWAY_CONTENT_TYPE)},
        }
        if code in {429, 409}:  # noqa: PLR2004 - throttled, or a keyed request still running
            entry["headers"] = dict(_RETRY_AFTER)
        declared[code] = entry
    return declared
