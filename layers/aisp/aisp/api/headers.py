"""Response headers every personal-data route sets: ``Cache-Control: no-store`` and the request id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import Response
    from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

__all__ = ["no_store"]


def no_store(app: Any, next_middleware: NextMiddleware) -> Response[Any]:
    """Powertools middleware: ``Cache-Control: no-store`` on every answer (account data, consents, cursors), and
    ``X-Request-ID``: the API's request id, the one our logs carry (``correlation_id``) and problem bodies name.

    Error answers already carry both (``aisp.api.errors.problem_response``).
    """
    response = next_middleware(app)
    response.headers.setdefault("Cache-Control", "no-store")
    request_id = app.current_event.request_context.request_id
    if request_id:
        response.headers.setdefault("X-Request-ID", str(request_id))
    return response
