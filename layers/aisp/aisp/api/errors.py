"""Exception → HTTP mapping in one place (STYLE.md §5): RFC 9457 ``application/problem+json`` bodies.

Each error class maps to a status and a stable ``code``; the body never carries bank text, tokens or IBANs, only
the constant message of our own error and the request id to correlate with the logs.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any, Final

from aisp import errors
from aisp.api.headers import NO_STORE, NOSNIFF, rate_limit_headers
from aisp.models.problem import FieldError, Problem
from aisp.observability import logger

if TYPE_CHECKING:
    from datetime import datetime

    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

PROBLEM_CONTENT_TYPE = "application/problem+json"
_POWERTOOLS_VALIDATION: Final = "aws_lambda_powertools.event_handler.middlewares.openapi_validation"

# Most specific first: the first class an error is an instance of wins.
ERROR_MAP: tuple[tuple[type[errors.AispError], int, str, str], ...] = (
    (errors.InvalidCompletionError, 400, "invalid_completion", "The completion value is unknown, used or expired"),
    (errors.InvalidRequestError, 400, "validation_error", "The request is invalid"),
    (errors.UnauthenticatedError, 401, "unauthenticated", "Authentication is required"),
    (errors.UserTokenRequiredError, 403, "user_token_required", "Only the user's own app may do this"),
    (errors.ForbiddenError, 403, "forbidden", "The caller may not do this"),
    (errors.QuotaExhaustedError, 429, "quota_exhausted", "Today's unattended reads of this data are spent"),
    (errors.UnknownBankError, 404, "bank_not_found", "No BPCE establishment has this bank code"),
    (errors.ConnectionNotFoundError, 404, "connection_not_found", "The user has no connection to this bank"),
    (errors.AccountNotFoundError, 404, "account_not_found", "The bank knows no such account for this user"),
    (errors.NotFoundError, 404, "not_found", "Not found"),
    (errors.ReauthRequiredError, 409, "reauth_required", "The user must log in to the bank again"),
    (errors.ConnectionPendingError, 409, "connection_pending", "The user has not finished logging in to this bank"),
    (errors.CompletionRequiredError, 409, "completion_required", "The app has not completed this connection yet"),
    (errors.ConnectionFailedError, 409, "connection_failed", "Connecting this bank failed; connect it again"),
    (
        errors.IdempotencyKeyReusedError,
        422,
        "idempotency_key_reused",
        "This Idempotency-Key was used for another request",
    ),
    (errors.RequestInProgressError, 409, "request_in_progress", "A request with this Idempotency-Key is in progress"),
    (errors.ConflictError, 409, "conflict", "The resource changed concurrently; retry"),
    (errors.BankRateLimitedError, 429, "bank_rate_limited", "The bank is throttling requests"),
    (errors.ConsentRequiredError, 403, "consent_required", "No consent was submitted for this connection"),
    (errors.ConsentRejectedError, 403, "account_not_consented", "The user has not consented to this data"),
    (errors.BankAccessDeniedError, 403, "account_not_consented", "The user has not consented to this data"),
    (errors.BankFeatureNotSupportedError, 501, "bank_feature_not_supported", "This bank does not offer this feature"),
    (errors.BankNotImplementedError, 501, "bank_feature_not_supported", "This bank does not offer this feature"),
    (errors.BankUnavailableError, 503, "bank_unavailable", "The bank is unavailable; retry later"),
    (errors.BankSignatureInvalidError, 502, "bank_signature_invalid", "The bank's answer failed its signature check"),
    (errors.BankProtocolError, 502, "bank_unavailable", "The bank answered something we could not understand"),
    (errors.UpstreamError, 502, "bank_unavailable", "The bank call failed"),
    # Our own dependencies (DynamoDB throttled or down once botocore's retries are spent, KMS unavailable or
    # refusing the key): nothing was written, the client may retry; logged with the stack trace for the operator.
    (errors.PersistenceError, 503, "service_unavailable", "The service is temporarily unavailable; retry later"),
    (errors.KeyServiceError, 503, "service_unavailable", "The service is temporarily unavailable; retry later"),
)
# When the bank throttles without saying for how long (BPCE's daily quota says nothing), and for a keyed request
# still running: how long clients should wait before retrying.
DEFAULT_RETRY_AFTER_SECONDS = 60
IN_PROGRESS_RETRY_AFTER_SECONDS = 1
# Another refresher holds the connection's lease (its bank call takes at most the bank timeout).
REFRESH_RETRY_AFTER_SECONDS = 5


def problem_response(
    status: int,
    code: str,
    title: str,
    *,
    detail: str | None = None,
    request_id: str | None = None,
    field_errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    retry_at: datetime | None = None,
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
        retry_at=retry_at,
    )
    request_header = {"X-Request-ID": request_id} if request_id else {}
    return Response(
        status_code=status,
        content_type=PROBLEM_CONTENT_TYPE,
        body=problem.model_dump_json(exclude_none=True),
        headers={**NO_STORE, **NOSNIFF, **request_header, **(headers or {})},
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


def unexpected_error_response(exc: BaseException, request_id: str | None) -> Response[str]:
    """The answer to an exception no other handler took.

    400 ``validation_error`` when it escaped Powertools' reading of the request body (its validation middleware's
    ``_get_body``): a content type it does not read, a multipart body without a boundary, JSON nested deeper than the
    recursion limit or an integer longer than ``int`` converts; the client's error, whatever the exception's class.
    Otherwise 500 ``internal_error``: a bug of ours, logged with its traceback, nothing of it in the answer.
    """
    if not any(
        frame.f_code.co_name == "_get_body" and frame.f_globals.get("__name__") == _POWERTOOLS_VALIDATION
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    ):
        logger.exception("unexpected error", error_type=type(exc).__name__)
        return problem_response(500, "internal_error", "Internal error", request_id=request_id)
    unsupported = isinstance(exc, NotImplementedError)  # Powertools' RequestUnsupportedContentType
    logger.info("request body is unreadable", fields=["body"], error_type=type(exc).__name__)
    return problem_response(
        400,
        "validation_error",
        "The request is invalid",
        detail="the request body must be application/json" if unsupported else "the request body is not readable JSON",
        request_id=request_id,
        field_errors=[FieldError(field="body", message="unsupported content type" if unsupported else "not JSON")],
    )


def retry_headers(error: errors.AispError) -> dict[str, str]:
    """``Retry-After`` for the errors a client should retry after a while (throttled, or still in progress)."""
    if isinstance(error, errors.QuotaExhaustedError):
        limit = error.details.get("limit")
        return {
            "Retry-After": str(error.retry_after),
            **rate_limit_headers(remaining=0, reset=error.retry_after, limit=limit if isinstance(limit, int) else None),
        }
    if isinstance(error, errors.BankRateLimitedError):
        retry_after = error.retry_after if error.retry_after is not None else DEFAULT_RETRY_AFTER_SECONDS
        return {"Retry-After": str(retry_after)}
    if isinstance(error, errors.RequestInProgressError):
        return {"Retry-After": str(IN_PROGRESS_RETRY_AFTER_SECONDS)}
    if isinstance(error, errors.RefreshInProgressError):
        return {"Retry-After": str(REFRESH_RETRY_AFTER_SECONDS)}
    return {}


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
            FieldError(field=".".join(str(part) for part in err.get("loc", ())), message=str(err.get("msg", "")))
            for err in exc.errors()
        ]
        logger.info("request rejected by validation", fields=[e.field for e in field_errors])
        return problem_response(
            400, "validation_error", "The request is invalid", request_id=request_id(), field_errors=field_errors
        )

    @app.exception_handler(errors.AispError)  # type: ignore[untyped-decorator]
    def handle_aisp_error(exc: errors.AispError) -> Response[str]:
        status, code, title = classify(exc)
        headers = retry_headers(exc)
        # A 501 for a feature the bank lacks is an answer, not a failure of ours.
        expected = status < 500 or isinstance(  # noqa: PLR2004
            exc, errors.BankFeatureNotSupportedError | errors.BankNotImplementedError
        )
        # The details first: one of them may be named like our own keys (KMS details carry an error_type).
        context = {**exc.details, "code": code, "error_type": type(exc).__name__}
        if expected:
            logger.info("request refused", **context)
        else:
            logger.exception("request failed", **context)
        # Our messages are constant and secret-free, but an internal error's cause is for the logs only.
        detail = exc.message if expected or isinstance(exc, errors.UpstreamError) else None
        field = exc.details.get("field") if isinstance(exc, errors.InvalidRequestError) else None
        field_errors = [FieldError(field=str(field), message=exc.message)] if field else None
        retry_at = exc.retry_at if isinstance(exc, errors.QuotaExhaustedError) else None
        return problem_response(
            status,
            code,
            title,
            detail=detail,
            request_id=request_id(),
            headers=headers,
            field_errors=field_errors,
            retry_at=retry_at,
        )

    @app.exception_handler(UnicodeDecodeError)  # type: ignore[untyped-decorator]
    def handle_undecodable_body(exc: UnicodeDecodeError) -> Response[str]:
        # A binary (base64) body that is not UTF-8: Powertools fails decoding it before any validation runs.
        logger.info("request body is not utf-8", fields=["body"])
        return problem_response(
            400,
            "validation_error",
            "The request is invalid",
            detail="the request body is not UTF-8 JSON",
            request_id=request_id(),
            field_errors=[FieldError(field="body", message="not UTF-8")],
        )

    @app.exception_handler(ServiceError)  # type: ignore[untyped-decorator]
    def handle_routing_error(exc: ServiceError) -> Response[str]:
        # Raised by the resolver itself: unknown route (404), method not allowed (405)...
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "request_error")
        return problem_response(exc.status_code, code, "Request could not be routed", request_id=request_id())

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def handle_unexpected(exc: Exception) -> Response[str]:
        return unexpected_error_response(exc, request_id())
