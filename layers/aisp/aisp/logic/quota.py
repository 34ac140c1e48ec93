"""Unattended reads within the bank's daily quota: a unit is reserved in the ledger before the bank is called, so
concurrent callers never exceed the limit; today's counters, for ``GET /v1/connections/{bank_code}/quota``.

Only a call that asks the bank for a first page counts (a ``next`` page is free at BPCE); one that never reached the
bank gives its unit back; a bank 429 or ``TMRQ`` marks its counter spent for the day. Design: ``docs/accounts.md``
(Unattended access and the quota).
"""

from __future__ import annotations

import math
import threading
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Final

from aisp import errors
from aisp.models.quota import (
    QuotaKey,
    QuotaMethod,
    QuotaResponse,
    QuotaUsage,
    QuotaUsageItem,
    paris_day,
    quota_resets_at,
)
from aisp.observability import logger

if TYPE_CHECKING:
    from aisp.logic.services import AccountServices

__all__ = ["OPERATION_METHODS", "QuotaMeter", "Reservation", "quota_today", "reserve"]

# The bank operation → the AIS method it counts as (on STET 1.4.0 the identity is read through GET /accounts).
OPERATION_METHODS: Final = {
    "get_accounts": QuotaMethod.ACCOUNTS,
    "get_balances": QuotaMethod.BALANCES,
    "get_transactions": QuotaMethod.TRANSACTIONS,
    "get_trusted_beneficiaries": QuotaMethod.TRUSTED_BENEFICIARIES,
    "get_end_user_identity": QuotaMethod.IDENTITY,
}
# A counter outlives its day by this much (DynamoDB's TTL then removes it).
KEPT_AFTER_RESET: Final = timedelta(days=1)


class QuotaMeter:
    """What one request's unattended reads left: the counter with the fewest units, for the answer's ``RateLimit``
    fields. Thread-safe: ``GET /v1/accounts`` reads several banks at once."""

    __slots__ = ("_lock", "day", "lowest", "reset_seconds")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lowest: QuotaUsage | None = None
        self.day: date | None = None
        self.reset_seconds = 0

    def record(self, usage: QuotaUsage, day: date, now: datetime) -> None:
        """Keep ``usage`` (a counter of the Paris ``day``, read at ``now``) if it leaves fewer units than what was
        recorded so far."""
        with self._lock:
            if self.lowest is None or usage.remaining < self.lowest.remaining:
                self.lowest, self.day = usage, day
                self.reset_seconds = _seconds_until(quota_resets_at(day), now)


class Reservation:
    """One reserved unit, settled by how its bank call failed."""

    __slots__ = ("expires_at", "key", "ledger", "limit")

    def __init__(self, services: AccountServices, key: QuotaKey, limit: int, expires_at: datetime) -> None:
        self.ledger, self.key, self.limit, self.expires_at = services.quota, key, limit, expires_at

    def settle(self, error: Exception) -> None:
        """After a failed call: one that never reached the bank gives its unit back; a bank quota refusal spends
        the day (a call that succeeded keeps its unit: nothing to settle)."""
        try:
            if isinstance(error, errors.BankRateLimitedError):
                logger.warning("bank refused an unattended read as over quota", method=self.key.method.value)
                self.ledger.exhaust(self.key, limit=self.limit, expires_at=self.expires_at)
            elif isinstance(error, errors.BankUnavailableError) and error.details.get("sent") is False:
                self.ledger.release(self.key)
        except errors.PersistenceError:
            # The unit stays spent: the ledger errs on the side of the bank's limit.
            logger.warning("could not settle an unattended read's unit", method=self.key.method.value)


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


def reserve(
    services: AccountServices,
    *,
    user_id: str,
    bank_code: str,
    operation: str,
    account_id: str | None,
    meter: QuotaMeter | None,
) -> Reservation:
    """Take the unit of one unattended call before the bank is called.

    Raises
    ------
    QuotaExhaustedError
        The day's units of this account and method are spent (or the bank said so); ``retry_at`` is the reset.
    PersistenceError
        The ledger failed: the bank is not called.
    """
    method = OPERATION_METHODS[operation]
    limit = services.connections.registry.get(bank_code).capabilities.unattended_daily_limit
    now = services.connections.clock.now()
    day = paris_day(now)
    resets_at = quota_resets_at(day)
    key = QuotaKey(bank_code, user_id, account_id, method, day)
    usage = services.quota.reserve(key, limit=limit, expires_at=resets_at + KEPT_AFTER_RESET)
    if usage is None:
        if meter is not None:
            meter.record(QuotaUsage(used=limit, limit=limit, exhausted=True), day, now)
        raise errors.QuotaExhaustedError(
            "today's unattended reads of this data are spent",
            retry_at=resets_at,
            retry_after=_seconds_until(resets_at, now),
            details={"bank_code": bank_code, "method": method.value, "limit": limit},
        )
    if meter is not None:
        meter.record(usage, day, now)
    return Reservation(services, key, limit, resets_at + KEPT_AFTER_RESET)


def quota_today(user_id: str, bank_code: str, *, services: AccountServices) -> QuotaResponse:
    """Today's counters of this user at this bank (the user need not be connected: a past day's counters stay).

    Raises
    ------
    UnknownBankError
        No such bank in the registry.
    """
    limit = services.connections.registry.get(bank_code).capabilities.unattended_daily_limit
    day = paris_day(services.connections.clock.now())
    counters = sorted(
        services.quota.usage(bank_code, user_id, day),
        key=lambda entry: (entry[0].method.value, entry[0].account_id or ""),
    )
    return QuotaResponse(
        bank_code=bank_code,
        limit=limit,
        day=day,
        resets_at=quota_resets_at(day),
        usage=[
            QuotaUsageItem(
                method=key.method,
                account_id=key.account_id,
                used=min(usage.used, usage.limit),
                remaining=usage.remaining,
            )
            for key, usage in counters
        ],
    )
