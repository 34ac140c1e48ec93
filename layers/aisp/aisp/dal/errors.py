"""PynamoDB exceptions → :mod:`aisp.errors` (STYLE §5), with the cause kept (``raise … from exc``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pynamodb.exceptions import DoesNotExist, PynamoDBException

from aisp.errors import ConflictError, NotFoundError, PersistenceError

CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"


@contextmanager
def translated(operation: str, *, not_found: type[NotFoundError] = NotFoundError, **details: Any) -> Iterator[None]:
    """Run a PynamoDB call and translate its failures.

    ``DoesNotExist`` → ``not_found``; a failed condition → :class:`ConflictError`; any other PynamoDB or
    deserialization failure → :class:`PersistenceError`. ``details`` must be safe to log (no tokens, no state).
    """
    context = {"operation": operation, **details}
    try:
        yield
    except DoesNotExist as exc:
        raise not_found("item not found", details=context) from exc
    except PynamoDBException as exc:
        code = exc.cause_response_code
        if code == CONDITIONAL_CHECK_FAILED:
            raise ConflictError("conditional write failed", details=context) from exc
        raise PersistenceError(
            "data store call failed", details={**context, **({"aws_error_code": code} if code else {})}
        ) from exc
