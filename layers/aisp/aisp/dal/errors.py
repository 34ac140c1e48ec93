"""PynamoDB exceptions → :mod:`aisp.errors` (STYLE §5), with the cause kept (``raise … from exc``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pynamodb.exceptions import DoesNotExist, PynamoDBException, TransactWriteError

from aisp.errors import ConflictError, NotFoundError, PersistenceError

CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"
TRANSACTION_CANCELED = "TransactionCanceledException"
# Why a transaction item was cancelled when the race was lost (a condition, or another transaction on the item).
_LOST_RACE = frozenset({"ConditionalCheckFailed", "TransactionConflict"})


@contextmanager
def translated(operation: str, *, not_found: type[NotFoundError] = NotFoundError, **details: Any) -> Iterator[None]:
    """Run a PynamoDB call and translate its failures.

    ``DoesNotExist`` → ``not_found``; a failed condition (of a transaction's item too) → :class:`ConflictError`;
    any other PynamoDB or deserialization failure → :class:`PersistenceError`. ``details`` must be safe to log (no
    tokens, no state).
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
        if isinstance(exc, TransactWriteError) and code == TRANSACTION_CANCELED:
            reasons = [reason.code if reason else None for reason in exc.cancellation_reasons]
            if _LOST_RACE & set(reasons):
                raise ConflictError("transaction condition failed", details={**context, "reasons": reasons}) from exc
        raise PersistenceError(
            "data store call failed", details={**context, **({"aws_error_code": code} if code else {})}
        ) from exc
