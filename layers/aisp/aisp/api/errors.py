"""Exception → HTTP mapping in one place (STYLE.md §5): RFC 9457 ``application/problem+json`` bodies.

Each error class maps to a status and a stable ``code``; the body never carries bank text, tokens or IBANs, only
the constant message of our own error and the request id to correlate with the logs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aisp import errors
from aisp.models.api import Problem
from aisp.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

PROBLEM_CONTENT_TYPE = "application/problem+json"

# Most specific first: the first class an error is an instance of wins.
ERROR_MAP: tuple[tuple[type[errors.AispError], int, str, str], ...] = (
    (errors.InvalidRequestError, 400, "validation_error", "The request is invalid"),
    (errors.UnauthenticatedError, 401, "unauthenticated", "Authentication is required"),
    (errors.UnknownBankError, 404, "bank_not_found", "No BPCE establishment has this bank code"),
    (errors.ConnectionNotFoundError, 404, "connection_not_found", "The user has no connection to this bank"),
    (errors.NotFoundError, 404, "not_found", "Not found"),
    (errors.ReauthRequiredError, 409, "reauth_required", "The user must log in to the bank again"),
    (errors.ConflictError, 409, "conflict", "The resource changed concurrently; retry"),
    (errors.BankRateLimitedError, 429, "bank_rate_limited", "The bank is throttling requests"),
    (errors.ConsentRejectedError, 403, "account_not_consented", "The user has not consented to this data"),
    (errors.BankAccessDeniedError, 403, "account_not_consented", "The user has not consented to this data"),
    (errors.BankUnavailableError, 503, "bank_unavailable", "The bank is unavailable; retry later"),
    (errors.BankProtocolError, 502, "bank_unavailable", "The bank answered something we could not understand"),
    (errors.UpstreamError, 502, "bank_unavailable", "The bank call failed"),
)


def problem_response(
    status: int,
    code: str,
    title: str,
    *,
    detail: str | None = None,
    request_id: str | None = None,
    field_errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    """Build a problem+json response."""
    from aws_lambda_powertools.event_handler import Response  # noqa: PLC0415 - keep cold start lean

    problem = Problem(
        type=f"urn:aisp-gateway:error:{code}",
        title=title,
        status=status,
        code=code,
        detail=detail,
        request_id=request_id,
        errors=field_errors,
    )
    return Response(
        status_code=status,
        content_type=PROBLEM_CONTENT_TYPE,
        body=problem.model_dump_json(exclude_none=True),
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def not_implemented(app: APIGatewayHttpResolver, detail: str) -> Response[str]:
    """501 for a declared route whose feature has not landed yet (``detail`` says which issue brings it)."""
    return problem_response(
        501,
        "not_implemented",
        "Not implemented yet",
        detail=detail,
        request_id=app.current_event.request_context.request_id,
    )


def classify(error: errors.AispError) -> tuple[int, str, str]:
    """Return ``(status, code, title)`` for an error; unknown errors are internal."""
    for cls, status, code, title in ERROR_MAP:
        if isinstance(error, cls):
            return status, code, title
    return 500, "internal_error", "Internal error"


def register_error_handlers(app: APIGatewayHttpResolver) -> None:
    """Attach the gateway's exception handlers to a resolver."""
    from aws_lambda_powertools.event_handler.exceptions import ServiceError  # noqa: PLC0415
    from aws_lambda_powertools.event_handler.openapi.exceptions import (  # noqa: PLC0415
        RequestValidationError,
    )

    def request_id() -> str | None:
        context: Any = app.current_event.request_context
        return str(context.request_id) if context.request_id else None

    @app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
    def handle_validation_error(exc: RequestValidationError) -> Response[str]:
        # Field locations and messages only: never echo the input (it may hold an IBAN or a token).
        field_errors = [
            {"field": ".".join(str(part) for part in err.get("loc", ())), "message": str(err.get("msg", ""))}
            for err in exc.errors()
        ]
        logger.info("request rejected by validation", fields=[e["field"] for e in field_errors])
        return problem_response(
            400, "validation_error", "The request is invalid", request_id=request_id(), field_errors=field_errors
        )

    @app.exception_handler(errors.AispError)  # type: ignore[untyped-decorator]
    def handle_aisp_error(exc: errors.AispError) -> Response[str]:
        status, code, title = classify(exc)
        headers: dict[str, str] = {}
        if isinstance(exc, errors.BankRateLimitedError) and exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        if status >= 500:  # noqa: PLR2004
            logger.exception("request failed", code=code, error_type=type(exc).__name__, **exc.details)
        else:
            logger.info("request refused", code=code, error_type=type(exc).__name__, **exc.details)
        # Our messages are constant and secret-free, but an internal error's cause is for the logs only.
        detail = exc.message if status < 500 or isinstance(exc, errors.UpstreamError) else None  # noqa: PLR2004
        return problem_response(status, code, title, detail=detail, request_id=request_id(), headers=headers)

    @app.exception_handler(ServiceError)  # type: ignore[untyped-decorator]
    def handle_routing_error(exc: ServiceError) -> Response[str]:
        # Raised by the resolver itself: unknown route (404), method not allowed (405)...
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "request_error")
        return problem_response(exc.status_code, code, "Request could not be routed", request_id=request_id())

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def handle_unexpected(exc: Exception) -> Response[str]:
        logger.exception("unexpected error", error_type=type(exc).__name__)
        return problem_response(500, "internal_error", "Internal error", request_id=request_id())
