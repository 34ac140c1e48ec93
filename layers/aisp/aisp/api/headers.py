"""Response headers of the API's answers (errors set the same ones in ``aisp.api.errors.problem_response``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import Response
    from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

__all__ = ["NOSNIFF", "NO_STORE", "RATE_LIMIT_POLICY", "no_store", "nosniff", "rate_limit_headers"]

# Every answer: a browser never second-guesses our content types (a JSON body is never rendered as HTML).
NOSNIFF: Final = {"X-Content-Type-Options": "nosniff"}
# Every answer that carries the user's data: no browser, proxy or CDN keeps a copy.
NO_STORE: Final = {"Cache-Control": "no-store"}


def nosniff(app: Any, next_middleware: NextMiddleware) -> Response[Any]:
    """Powertools middleware for every answer: ``X-Content-Type-Options: nosniff``, and ``X-Request-ID``: the API's
    request id, the one our logs carry (``correlation_id``), problem bodies and the audit trail name."""
    response = next_middleware(app)
    for name, value in NOSNIFF.items():
        response.headers.setdefault(name, value)
    request_id = app.current_event.request_context.request_id
    if request_id:
        response.headers.setdefault("X-Request-ID", str(request_id))
    return response


def no_store(app: Any, next_middleware: NextMiddleware) -> Response[Any]:
    """Powertools middleware for an answer with the user's data: ``Cache-Control: no-store``, and :func:`nosniff`'s."""
    response = nosniff(app, next_middleware)
    for name, value in NO_STORE.items():
        response.headers.setdefault(name, value)
    return response


# The IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers): one policy, the bank's unattended daily quota.
RATE_LIMIT_POLICY: Final = "unattended"


def rate_limit_headers(*, remaining: int, reset: int, limit: int | None, window: int | None = None) -> dict[str, str]:
    """``RateLimit`` (units left, seconds to the reset) and, when the limit is known, ``RateLimit-Policy`` (units a
    window, the window in seconds: a Paris day, 23 or 25 hours on DST days)."""
    headers = {"RateLimit": f'"{RATE_LIMIT_POLICY}";r={max(0, remaining)};t={max(0, reset)}'}
    if limit is not None:
        policy = f'"{RATE_LIMIT_POLICY}";q={limit}' + (f";w={window}" if window is not None else "")
        headers["RateLimit-Policy"] = policy
    return headers
