"""OpenAPI response declarations shared by the HTTP functions' routes (``responses=`` of the route decorators).

The success response's schema comes from each route's return annotation (Powertools fills it in); every error is an
RFC 9457 problem (``application/problem+json``, :class:`~aisp.models.api.Problem`) whose ``code`` says which one.
``scripts/export_openapi.py`` merges the functions' documents into ``docs/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from aisp.api.errors import PROBLEM_CONTENT_TYPE
from aisp.models.api import Problem

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

__all__ = ["ACCOUNT_ERRORS", "BANK_ERRORS", "ERROR_CODES", "responses"]

# Which codes each status carries (the problem's ``code``), for the document's readers.
ERROR_CODES: Final[dict[int, str]] = {
    400: "validation_error: a path, query, header or body field is invalid (detail `invalid_cursor` for a cursor); "
    "invalid_completion: the completion value is unknown, used, expired or another user's",
    401: "unauthenticated",
    403: "consent_required (no consent submitted yet) or account_not_consented (the consent does not cover it)",
    404: "bank_not_found, connection_not_found, account_not_found or not_found (no such route)",
    409: "reauth_required (the user must log in to the bank again), connection_pending (the first login is not "
    "finished), completion_required (the app has not completed the connection), connection_failed (connect "
    "again), request_in_progress or conflict",
    422: "idempotency_key_reused (same Idempotency-Key, different body)",
    429: "bank_rate_limited (see Retry-After)",
    501: "bank_feature_not_supported",
    502: "bank_unavailable (the bank answered something unusable)",
    503: "bank_unavailable (the bank is down or timed out) or service_unavailable (our data store or key service is "
    "throttled or down; nothing was written)",
}
_RETRY_AFTER: Final = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer", "minimum": 0}}
}
# Every route that calls a bank for a connection.
BANK_ERRORS: Final = (400, 401, 403, 404, 409, 429, 502, 503)
ACCOUNT_ERRORS: Final = (*BANK_ERRORS, 501)


def responses(
    errors: Iterable[int], *, status: int = 200, description: str = "OK", content: dict[str, Any] | None = None
) -> dict[int, OpenAPIResponse]:
    """``{status: success, <error status>: problem...}`` for a route decorator.

    ``content`` overrides the success body (default: the route's return annotation, as JSON).
    """
    declared: dict[int, Any] = {status: {"description": description}}
    if content is not None:
        declared[status]["content"] = content
    for code in sorted(set(errors)):
        entry: dict[str, Any] = {
            "description": ERROR_CODES[code],
            "content": {PROBLEM_CONTENT_TYPE: {"model": Problem}},
        }
        if code in {429, 409}:  # noqa: PLR2004 - throttled, or a keyed request still running
            entry["headers"] = dict(_RETRY_AFTER)
        declared[code] = entry
    return declared
