"""Response headers every personal-data route sets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import Response
    from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

__all__ = ["no_store"]


def no_store(app: Any, next_middleware: NextMiddleware) -> Response[Any]:
    """Powertools middleware: ``Cache-Control: no-store`` on every answer (account data, consents, cursors).

    Error answers already carry it (``aisp.api.errors.problem_response``).
    """
    response = next_middleware(app)
    response.headers.setdefault("Cache-Control", "no-store")
    return response
