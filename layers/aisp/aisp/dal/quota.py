"""The unattended-access ledger in DynamoDB (``QuotaTable``): one counter item per user, bank, account, method and
Paris day, taken with one conditional ``UpdateItem`` so racing callers never exceed the limit. Design:
``docs/accounts.md`` (Unattended access and the quota).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Final

from aisp.dal.errors import translated
from aisp.dal.tables import QuotaRecord
from aisp.errors import ConflictError
from aisp.models.quota import QuotaKey, QuotaMethod, QuotaUsage

__all__ = ["DynamoQuotaLedger"]

_NO_ACCOUNT: Final = "-"


def _partition(bank_code: str, user_id: str) -> str:
    return f"{bank_code}#{user_id}"


def _counter(key: QuotaKey) -> str:
    return f"{key.day.isoformat()}#{key.method.value}#{key.account_id or _NO_ACCOUNT}"


def _key(bank_code: str, user_id: str, counter: str) -> QuotaKey:
    day, method, account = counter.split("#", 2)
    account_id = None if account == _NO_ACCOUNT else account
    return QuotaKey(bank_code, user_id, account_id, QuotaMethod(method), date.fromisoformat(day))


class DynamoQuotaLedger:
    """:class:`~aisp.logic.ports.QuotaLedger` over ``QuotaTable``."""

    def reserve(self, key: QuotaKey, *, limit: int, expires_at: datetime) -> QuotaUsage | None:
        """One conditional ``ADD used 1``: below the limit and not marked exhausted, else ``None``."""
        record = QuotaRecord(_partition(key.bank_code, key.user_id), _counter(key))
        condition = (QuotaRecord.used.does_not_exist() | (QuotaRecord.used < limit)) & (
            QuotaRecord.exhausted.does_not_exist()
        )
        try:
            with translated("reserve_quota", bank_code=key.bank_code, method=key.method.value):
                record.update(
                    actions=[
                        QuotaRecord.used.add(1),
                        QuotaRecord.limit.set(limit),
                        QuotaRecord.expires_at.set(expires_at),
                    ],
                    condition=condition,
                )
        except ConflictError:  # the condition: the limit is reached or the bank said the day is spent
            return None
        return QuotaUsage(used=int(record.used), limit=limit)

    def release(self, key: QuotaKey) -> None:
        """``ADD used -1`` while above zero (a counter already at zero or gone stays so)."""
        record = QuotaRecord(_partition(key.bank_code, key.user_id), _counter(key))
        try:
            with translated("release_quota", bank_code=key.bank_code, method=key.method.value):
                record.update(actions=[QuotaRecord.used.add(-1)], condition=QuotaRecord.used > 0)
        except ConflictError:
            return

    def exhaust(self, key: QuotaKey, *, limit: int, expires_at: datetime) -> None:
        """Mark the counter spent (created if need be)."""
        record = QuotaRecord(_partition(key.bank_code, key.user_id), _counter(key))
        with translated("exhaust_quota", bank_code=key.bank_code, method=key.method.value):
            record.update(
                actions=[
                    QuotaRecord.exhausted.set(True),  # noqa: FBT003 - PynamoDB's action API takes the value
                    QuotaRecord.used.set(QuotaRecord.used | 0),
                    QuotaRecord.limit.set(limit),
                    QuotaRecord.expires_at.set(expires_at),
                ]
            )

    def usage(self, bank_code: str, user_id: str, day: date) -> list[tuple[QuotaKey, QuotaUsage]]:
        """The counters of ``day``: one strongly consistent query on the partition, by sort-key prefix."""
        with translated("quota_usage", bank_code=bank_code):
            records = list(
                QuotaRecord.query(
                    _partition(bank_code, user_id),
                    QuotaRecord.counter.startswith(f"{day.isoformat()}#"),
                    consistent_read=True,
                )
            )
        return [
            (
                _key(bank_code, user_id, record.counter),
                QuotaUsage(used=int(record.used), limit=int(record.limit), exhausted=bool(record.exhausted)),
            )
            for record in records
        ]
