"""The sync benchmark's tables: the tests' in-memory twins (``tests/memory.py``) with the real tables' round trips.

On moto every conditional update costs milliseconds of moto's own Python, so a run on it would measure moto
(``bench/README.md``). These models sleep one simulated round trip per DynamoDB call the real store and ledger make,
and the store seals and opens every transaction with ``DynamoTransactionStore``'s own code. Imported after
``bench.harness.quiet_stdout`` (``tests.memory`` imports the gateway, whose logger binds stdout).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING

from aisp.models.sync import AccountFreshness, Freshness, StoredAccount, SyncedTransaction
from tests.memory import MemoryQuotaLedger, MemoryTransactionStore

if TYPE_CHECKING:
    from aisp.dal.sync import DynamoTransactionStore
    from aisp.models.bank import BankBalance
    from aisp.models.quota import QuotaKey, QuotaUsage
    from aisp.models.sync import DueSync, TransactionChange

__all__ = ["RoundTripLedger", "RoundTripStore"]


class _RoundTrips:
    """One DynamoDB call's network wait per call (``time.sleep`` releases the GIL, as a socket read does)."""

    def __init__(self, latency: float) -> None:
        self._latency = latency
        self._count_lock = threading.Lock()
        self.round_trips = 0

    def wait(self, calls: int = 1) -> None:
        with self._count_lock:
            self.round_trips += calls
        if self._latency > 0 and calls:
            time.sleep(self._latency * calls)


class RoundTripStore(MemoryTransactionStore):
    """``MemoryTransactionStore`` with ``DynamoTransactionStore``'s round trips (slept: 1 a query, update or put;
    ``append``: the lease, one TransactWriteItems per 50 changes, the commit) and its sealing (done with its own
    code: each change's blob sealed on write, each stored transaction's opened on ``live`` and ``stored``)."""

    def __init__(self, latency: float, sealer: DynamoTransactionStore) -> None:
        super().__init__()
        self.trips = _RoundTrips(latency)
        self._sealer = sealer
        self._blob_lock = threading.Lock()
        self._blobs: dict[tuple[str, str, str], bytes] = {}

    def live(self, connection_id: str, account_id: str, *, since: date | None = None) -> StoredAccount:
        self.trips.wait(2)
        stored, version = super().live(connection_id, account_id, since=since)
        return StoredAccount(self._opened(connection_id, account_id, stored), version)

    def stored(
        self, connection_id: str, account_id: str, transaction_ids: Collection[str]
    ) -> dict[str, SyncedTransaction]:
        self.trips.wait(math.ceil(len(set(transaction_ids)) / 100))  # BatchGetItem: 100 keys a call
        return self._opened(connection_id, account_id, super().stored(connection_id, account_id, transaction_ids))

    def _opened(
        self, connection_id: str, account_id: str, stored: dict[str, SyncedTransaction]
    ) -> dict[str, SyncedTransaction]:
        """The transactions as the real store gives them: each one's blob opened with its code."""
        from aisp.dal.tables import SyncRecord  # noqa: PLC0415

        with self._blob_lock:
            blobs = {tid: self._blobs[(connection_id, account_id, tid)] for tid in stored}
        opened = {}
        for tid, blob in blobs.items():
            record = SyncRecord(connection_id, f"tx#{account_id}#{tid}", account_id=account_id, transaction_id=tid)
            record.blob = blob
            opened[tid] = self._sealer._open(connection_id, record)  # noqa: SLF001 - the real store's opening
        return opened

    def append(
        self,
        connection_id: str,
        changes: Sequence[TransactionChange],
        *,
        owner: str,
        now: datetime,
        expected: int | None = None,
    ) -> int:
        sealed = {
            (connection_id, change.account_id, change.transaction_id): (
                None if change.synced is None else self._sealer._seal(connection_id, change.synced)  # noqa: SLF001
            )
            for change in changes
        }
        self.trips.wait(2 + math.ceil(len(changes) / 99))
        committed = super().append(connection_id, changes, owner=owner, now=now, expected=expected)
        with self._blob_lock:
            for key, blob in sealed.items():
                if blob is None:
                    self._blobs.pop(key, None)
                else:
                    self._blobs[key] = blob
        return committed

    def remember_account(self, connection_id: str, account_id: str, *, identifier: str) -> None:
        self.trips.wait()
        super().remember_account(connection_id, account_id, identifier=identifier)

    def accounts(self, connection_id: str) -> dict[str, str]:
        self.trips.wait()
        return super().accounts(connection_id)

    def purge(
        self,
        connection_id: str,
        account_ids: Collection[str] | None = None,
        *,
        balances_only: bool = False,
        transactions_only: bool = False,
    ) -> None:
        self.trips.wait(2)
        super().purge(connection_id, account_ids, balances_only=balances_only, transactions_only=transactions_only)

    def put_balances(
        self,
        connection_id: str,
        account_id: str,
        balances: Sequence[BankBalance],
        *,
        now: datetime,
        live: bool = False,
    ) -> bool:
        self.trips.wait()
        return super().put_balances(connection_id, account_id, balances, now=now, live=live)

    def freshness(self, connection_id: str, account_id: str) -> AccountFreshness:
        self.trips.wait()  # one BatchGetItem
        return super().freshness_many(connection_id, [account_id])[account_id]

    def freshness_many(self, connection_id: str, account_ids: Collection[str]) -> dict[str, AccountFreshness]:
        self.trips.wait(math.ceil(2 * len(set(account_ids)) / 100))  # BatchGetItem: two keys an account, 100 a call
        return super().freshness_many(connection_id, account_ids)

    def note_listing(self, connection_id: str, account_id: str, freshness: Freshness) -> bool:
        self.trips.wait()
        return super().note_listing(connection_id, account_id, freshness)

    def balances(self, connection_id: str, account_id: str) -> tuple[list[BankBalance], datetime] | None:
        self.trips.wait()
        return super().balances(connection_id, account_id)

    def claim_sync(self, connection_id: str, *, now: datetime, next_at: datetime) -> bool:
        self.trips.wait()
        return super().claim_sync(connection_id, now=now, next_at=next_at)

    def defer_sync(self, connection_id: str, *, at: datetime) -> None:
        self.trips.wait()
        super().defer_sync(connection_id, at=at)

    def due_syncs(self, shard: int, *, due_before: datetime, page_size: int | None = None) -> Iterator[DueSync]:
        found = list(super().due_syncs(shard, due_before=due_before))
        self.trips.wait(max(1, math.ceil(len(found) / (page_size or 100))))
        yield from found

    def count_due_syncs(self, shard: int, *, due_before: datetime) -> int:
        self.trips.wait()
        return super().count_due_syncs(shard, due_before=due_before)

    def unschedule_sync(self, due: DueSync) -> bool:
        self.trips.wait()
        return super().unschedule_sync(due)

    def claim_catchup(self, shard: int, *, now: datetime, next_at: datetime) -> bool:
        self.trips.wait()
        return super().claim_catchup(shard, now=now, next_at=next_at)


class RoundTripLedger(MemoryQuotaLedger):
    """``MemoryQuotaLedger`` with one round trip a call (each is one conditional ``UpdateItem`` or a query)."""

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.trips = _RoundTrips(latency)

    def reserve(self, key: QuotaKey, *, limit: int, expires_at: datetime) -> QuotaUsage | None:
        self.trips.wait()
        return super().reserve(key, limit=limit, expires_at=expires_at)

    def release(self, key: QuotaKey) -> None:
        self.trips.wait()
        super().release(key)

    def exhaust(self, key: QuotaKey, *, limit: int, expires_at: datetime) -> None:
        self.trips.wait()
        super().exhaust(key, limit=limit, expires_at=expires_at)

    def usage(self, bank_code: str, user_id: str, day: date) -> list[tuple[QuotaKey, QuotaUsage]]:
        self.trips.wait()
        return super().usage(bank_code, user_id, day)
