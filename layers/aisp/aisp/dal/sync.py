"""The synced transactions and their change feed in DynamoDB (``SyncTable``, one partition per connection): the feed's
head with its writers' lease, one item per transaction, and the changes packed in order, up to 99 of one account to an
item, written with their transactions in one DynamoDB transaction; each item sealed like the tokens and bound to its
key. Design: ``docs/sync.md`` (The store).
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Final

from pynamodb.connection import Connection as LowLevel
from pynamodb.transactions import TransactWrite

from aisp.clock import epoch
from aisp.dal.errors import translated
from aisp.dal.tables import SyncRecord
from aisp.errors import ConflictError, TokenIntegrityError
from aisp.models.bank import BankBalance
from aisp.models.sync import (
    AccountFreshness,
    ChangeKind,
    DueSync,
    FeedEntry,
    FeedPage,
    Freshness,
    StoredAccount,
    StoredChange,
    StoredFeedPage,
    SyncedTransaction,
    TransactionChange,
    sync_shard,
    window_day,
)

if TYPE_CHECKING:
    from pynamodb.expressions.update import Action

    from aisp.aws.kms import TokenCipher

__all__ = ["FEED_KEEP_DAYS", "DynamoTransactionStore"]

HEAD: Final = "feed"
# The sort key of a shard's catch-up mark (its partition: ``catchup#<shard>``, never a connection's id).
CATCHUP: Final = "catchup"
# A change is kept this long: a sync cursor opens for a year (docs/sync.md, The cursor).
FEED_KEEP_DAYS: Final = 400
# Changes per change item: each is written with its transaction, and one TransactWriteItems takes 100 items.
_CHUNK: Final = 99
# A change item's sealed changes stay well under DynamoDB's 400 KB an item (a change is about 1 KB).
_CHUNK_BYTES: Final = 256 * 1024
# A change item's pack is its JSON deflated behind this byte; one that starts with "[" is JSON as written before.
_DEFLATED: Final = b"z"


def _tx_key(account_id: str, transaction_id: str) -> str:
    return f"tx#{account_id}#{transaction_id}"


def _change_key(seq: int) -> str:
    return f"chg#{seq:012d}"


def _binding(connection_id: str, account_id: str, transaction_id: str) -> dict[str, str]:
    return {"connection_id": connection_id, "account_id": account_id, "transaction_id": transaction_id}


def _chunks(changes: Sequence[TransactionChange], sizes: Sequence[int]) -> Iterator[list[int]]:
    """The changes' indexes in runs of one account, at most :data:`_CHUNK` and :data:`_CHUNK_BYTES` each."""
    chunk: list[int] = []
    size = 0
    for index, change in enumerate(changes):
        if chunk and (
            changes[chunk[0]].account_id != change.account_id
            or len(chunk) == _CHUNK
            or size + sizes[index] > _CHUNK_BYTES
        ):
            yield chunk
            chunk, size = [], 0
        chunk.append(index)
        size += sizes[index]
    if chunk:
        yield chunk


def _source(*, live: bool) -> str:
    return "live" if live else "sync"


def _freshness(record: SyncRecord | None) -> Freshness | None:
    if record is None or record.committed_at is None:
        return None
    listed_from = None if record.listed_from is None else date.fromisoformat(record.listed_from)
    return Freshness(record.committed_at, record.source == "live", listed_from)


def _save(record: SyncRecord, operation: str, *, kept_only: bool) -> bool:
    """Put ``record``; with ``kept_only``, only over an item already there (``False`` when there was none)."""
    try:
        with translated(operation):
            record.save(condition=SyncRecord.sk.exists() if kept_only else None)
    except ConflictError:
        if not kept_only:
            raise
        return False
    return True


class DynamoTransactionStore:
    """:class:`~aisp.logic.ports.TransactionStore` over ``SyncTable``.

    Parameters
    ----------
    cipher
        Returns the envelope cipher the tokens use (``aisp.wiring.token_cipher``), called on first use.
    retention
        How long a transaction is kept after its day (its TTL; default: ``TRANSACTION_RETENTION_DAYS`` of
        :class:`~aisp.settings.SyncSettings`, read on the first write); changes are kept :data:`FEED_KEEP_DAYS`.
    lease_seconds
        How long a writer holds a connection's feed (longer than one write of a sync run takes).
    """

    def __init__(
        self,
        cipher: Callable[[], TokenCipher],
        *,
        retention: timedelta | None = None,
        lease_seconds: int = 60,
    ) -> None:
        self._cipher = cipher
        self._retention = retention
        self._lease_seconds = lease_seconds

    # -- sealing -------------------------------------------------------------------------------------------------

    def _seal(self, connection_id: str, synced: SyncedTransaction, text: str | None = None) -> bytes:
        """A transaction item's blob (``text``: its JSON, when already made)."""
        binding = _binding(connection_id, synced.account_id, synced.transaction_id)
        return self._cipher().encrypt((text or synced.model_dump_json()).encode(), binding=binding)

    def _open(self, connection_id: str, record: SyncRecord) -> SyncedTransaction:
        account_id, transaction_id = record.account_id or "", record.transaction_id or ""
        plaintext = self._cipher().decrypt(
            bytes(record.blob or b""), binding=_binding(connection_id, account_id, transaction_id)
        )
        try:
            synced = SyncedTransaction.model_validate_json(plaintext)
        except ValueError:
            raise TokenIntegrityError("synced transaction is malformed", details={"operation": "sync"}) from None
        if (synced.account_id, synced.transaction_id) != (account_id, transaction_id):
            raise TokenIntegrityError("synced transaction is not its item's", details={"operation": "sync"})
        return synced

    # -- reads ---------------------------------------------------------------------------------------------------

    def _query(self, connection_id: str, prefix: str, *, limit: int | None = None) -> Iterator[SyncRecord]:
        return SyncRecord.query(connection_id, SyncRecord.sk.startswith(prefix), consistent_read=True, limit=limit)

    def live(self, connection_id: str, account_id: str, *, since: date | None = None) -> StoredAccount:
        """The head's ``seq``, then one strongly consistent query of the account's transaction items; with ``since``,
        filtered on their ``day`` (no ``day``: pending, undated, or written before it was kept), so only those are
        opened. The query still reads (and DynamoDB bills) every item of the account: the ids are not by day."""
        window = None if since is None else SyncRecord.day.does_not_exist() | (SyncRecord.day >= since.isoformat())
        with translated("sync_live"):
            head = self._head(connection_id)
            records = list(
                SyncRecord.query(
                    connection_id,
                    SyncRecord.sk.startswith(f"tx#{account_id}#"),
                    filter_condition=window,
                    consistent_read=True,
                )
            )
        return StoredAccount(
            {record.transaction_id or "": self._open(connection_id, record) for record in records},
            0 if head is None else int(head.seq or 0),
        )

    def stored(
        self, connection_id: str, account_id: str, transaction_ids: Collection[str]
    ) -> dict[str, SyncedTransaction]:
        """The transaction items by key, in strongly consistent ``BatchGetItem`` calls (100 keys each, unprocessed
        keys asked again), opened."""
        keys = [
            (connection_id, _tx_key(account_id, transaction_id)) for transaction_id in dict.fromkeys(transaction_ids)
        ]
        if not keys:
            return {}
        with translated("sync_stored"):
            records = list(SyncRecord.batch_get(keys, consistent_read=True))
        return {record.transaction_id or "": self._open(connection_id, record) for record in records}

    def feed(self, connection_id: str, *, after: int, limit: int) -> FeedPage:
        """:meth:`feed_json`'s page, each transaction validated into its model."""
        page = self.feed_json(connection_id, after=after, limit=limit)
        try:
            entries = [
                FeedEntry(
                    change.seq,
                    TransactionChange(
                        change.kind,
                        change.account_id,
                        change.transaction_id,
                        None if change.synced is None else SyncedTransaction.model_validate(change.synced),
                    ),
                )
                for change in page.entries
            ]
        except ValueError:
            raise TokenIntegrityError("stored changes are malformed", details={"operation": "sync"}) from None
        return FeedPage(entries, page.committed, page.synced_at)

    def feed_json(self, connection_id: str, *, after: int, limit: int) -> StoredFeedPage:
        """The head's ``committed``, then the change items whose last number is after ``after``, up to it (strongly
        consistent; a change item is keyed by its last number, so the first one read may start before ``after``)."""
        entries: list[StoredChange] = []
        with translated("sync_feed"):
            head = self._head(connection_id)
            committed = 0 if head is None else int(head.committed or 0)
            synced_at = None if head is None else head.committed_at
            if committed <= after:
                return StoredFeedPage([], committed, synced_at)
            records = SyncRecord.query(
                connection_id,
                SyncRecord.sk.between(_change_key(after + 1), _change_key(committed)),
                consistent_read=True,
                page_size=limit // _CHUNK + 2,
            )
            for record in records:
                entries += [change for change in self._changes(connection_id, record) if change.seq > after]
                if len(entries) >= limit:
                    break
        return StoredFeedPage(entries[:limit], committed, synced_at)

    def _head(self, connection_id: str) -> SyncRecord | None:
        try:
            return SyncRecord.get(connection_id, HEAD, consistent_read=True)
        except SyncRecord.DoesNotExist:
            return None

    def _changes(self, connection_id: str, record: SyncRecord) -> list[StoredChange]:
        """A change item's changes, opened and parsed, numbered from its ``seq``. No model is built: the blob is
        authenticated (sealed, bound to this item), so it holds what :meth:`append` wrote from validated models."""
        account_id = record.account_id or ""
        plaintext = self._cipher().decrypt(
            bytes(record.blob or b""), binding=_binding(connection_id, account_id, record.sk)
        )
        try:
            if plaintext.startswith(_DEFLATED):
                plaintext = zlib.decompress(plaintext[len(_DEFLATED) :])
            packed = json.loads(plaintext)
            if not isinstance(packed, list):
                raise TypeError(type(packed).__name__)
            changes = [
                StoredChange(seq, ChangeKind(item["kind"]), account_id, item["transaction_id"], item["synced"])
                for seq, item in enumerate(packed, int(record.seq or 0))
            ]
            if not all(isinstance(change.transaction_id, str) for change in changes):
                raise TypeError("transaction_id")
        except (ValueError, TypeError, KeyError, zlib.error):
            raise TokenIntegrityError("stored changes are malformed", details={"operation": "sync"}) from None
        for change in changes:
            if change.synced is not None and (
                not isinstance(change.synced, dict)
                or change.synced.get("account_id") != account_id
                or change.synced.get("transaction_id") != change.transaction_id
            ):
                raise TokenIntegrityError("stored changes are not their item's", details={"operation": "sync"})
        return changes

    # -- writes --------------------------------------------------------------------------------------------------

    def append(
        self,
        connection_id: str,
        changes: Sequence[TransactionChange],
        *,
        owner: str,
        now: datetime,
        expected: int | None = None,
    ) -> int:
        """Take the lease and the numbers in one update (while ``seq`` is still ``expected``, when given), write the
        changes packed with their transactions (each pack in one DynamoDB transaction), then move ``committed`` and
        let the lease go.

        The update also commits what a writer that died holding the lease had numbered: every change item written is
        whole with its transaction, and a number never written is a gap readers skip.
        """
        head = SyncRecord(connection_id, HEAD)
        free = (
            SyncRecord.lease_until.does_not_exist()
            | (SyncRecord.lease_until < epoch(now))
            | (SyncRecord.lease_owner == owner)
        )
        if expected is not None:
            unchanged = SyncRecord.seq == expected
            free &= (SyncRecord.seq.does_not_exist() | unchanged) if expected == 0 else unchanged
        try:
            with translated("sync_lease"):
                head.update(
                    actions=[
                        SyncRecord.committed.set(SyncRecord.seq | 0),
                        SyncRecord.seq.set((SyncRecord.seq | 0) + len(changes)),
                        SyncRecord.lease_owner.set(owner),
                        SyncRecord.lease_until.set(epoch(now) + self._lease_seconds),
                    ],
                    condition=free,
                )
        except ConflictError as exc:
            raise ConflictError(
                "another sync writes this connection or wrote it since it was read", details={"operation": "sync_lease"}
            ) from exc
        last = int(head.seq or 0)
        first = last - len(changes) + 1
        texts = [None if change.synced is None else change.synced.model_dump_json() for change in changes]
        sizes = [len(change.transaction_id) + len(text or "") + 64 for change, text in zip(changes, texts, strict=True)]
        for chunk in _chunks(changes, sizes):
            self._write(connection_id, [(first + index, changes[index], texts[index]) for index in chunk], now)
        with translated("sync_commit"):
            head.update(
                actions=[
                    SyncRecord.committed.set(last),
                    SyncRecord.committed_at.set(now),
                    SyncRecord.lease_owner.remove(),
                    SyncRecord.lease_until.remove(),
                ],
                condition=SyncRecord.lease_owner == owner,
            )
        return last

    def _write(
        self, connection_id: str, numbered: list[tuple[int, TransactionChange, str | None]], now: datetime
    ) -> None:
        """One change item (``chg#<its last number>``) and the transactions its changes leave, in one transaction."""
        account_id, cipher = numbered[0][1].account_id, self._cipher()
        key = _change_key(numbered[-1][0])
        packed = ",".join(
            f'{{"kind":"{change.kind.value}","transaction_id":{json.dumps(change.transaction_id)},'
            f'"synced":{text or "null"}}}'
            for _, change, text in numbered
        )
        entry = SyncRecord(
            connection_id,
            key,
            seq=numbered[0][0],
            account_id=account_id,
            blob=cipher.encrypt(
                _DEFLATED + zlib.compress(f"[{packed}]".encode()), binding=_binding(connection_id, account_id, key)
            ),
            expires_at=now + timedelta(days=FEED_KEEP_DAYS),
        )
        with translated("sync_write"), TransactWrite(connection=LowLevel()) as transaction:
            for seq, change, text in numbered:
                state = SyncRecord(connection_id, _tx_key(change.account_id, change.transaction_id))
                if change.synced is None or text is None:
                    transaction.delete(state)
                    continue
                state.account_id, state.transaction_id, state.seq = change.account_id, change.transaction_id, seq
                state.blob = self._seal(connection_id, change.synced, text)
                state.expires_at = self._expiry(change.synced, now)
                day = window_day(change.synced.transaction)
                state.day = None if day is None else day.isoformat()
                transaction.save(state)
            transaction.save(entry)

    def _expiry(self, synced: SyncedTransaction, now: datetime) -> datetime:
        if self._retention is None:
            from aisp.settings import SyncSettings, load_settings  # noqa: PLC0415

            settings: SyncSettings = load_settings(SyncSettings)
            self._retention = timedelta(days=settings.transaction_retention_days)
        day = synced.transaction.booking_date or synced.transaction.value_date or synced.transaction.transaction_date
        if day is None:
            return now + self._retention
        return datetime.combine(day, now.timetz()) + self._retention

    def put_balances(
        self,
        connection_id: str,
        account_id: str,
        balances: Sequence[BankBalance],
        *,
        now: datetime,
        live: bool = False,
    ) -> bool:
        """A ``bal#<account_id>`` item: the balances' JSON sealed, ``committed_at`` the read's time, ``source``; a
        live one on condition that the item exists."""
        payload = json.dumps([balance.model_dump(mode="json") for balance in balances]).encode()
        blob = self._cipher().encrypt(payload, binding=_binding(connection_id, account_id, "balances"))
        record = SyncRecord(
            connection_id,
            f"bal#{account_id}",
            account_id=account_id,
            blob=blob,
            committed_at=now,
            source=_source(live=live),
        )
        return _save(record, "sync_balances_put", kept_only=live)

    def balances(self, connection_id: str, account_id: str) -> tuple[list[BankBalance], datetime] | None:
        """The ``bal#`` item, opened."""
        with translated("sync_balances"):
            try:
                record = SyncRecord.get(connection_id, f"bal#{account_id}", consistent_read=True)
            except SyncRecord.DoesNotExist:
                return None
        plaintext = self._cipher().decrypt(
            bytes(record.blob or b""), binding=_binding(connection_id, account_id, "balances")
        )
        try:
            balances = [BankBalance.model_validate(item) for item in json.loads(plaintext)]
        except (ValueError, TypeError):
            raise TokenIntegrityError("stored balances are malformed", details={"operation": "sync"}) from None
        if record.committed_at is None:
            return None
        return balances, record.committed_at

    def freshness(self, connection_id: str, account_id: str) -> AccountFreshness:
        """The ``list#`` and ``bal#`` items' times, sources and first day (:meth:`freshness_many` of one account)."""
        return self.freshness_many(connection_id, [account_id])[account_id]

    def freshness_many(self, connection_id: str, account_ids: Collection[str]) -> dict[str, AccountFreshness]:
        """Every account's ``list#`` and ``bal#`` items in strongly consistent ``BatchGetItem`` calls (PynamoDB asks
        100 keys a call and asks again for the keys DynamoDB left unprocessed); only their times, sources and first
        day are read, no blob, nothing opened."""
        wanted = list(dict.fromkeys(account_ids))
        keys = [(connection_id, f"{kind}#{account_id}") for account_id in wanted for kind in ("list", "bal")]
        attributes = ["connection_id", "sk", "committed_at", "source", "listed_from"]
        found: dict[str, SyncRecord] = {}
        if keys:
            with translated("sync_freshness"):
                found = {
                    record.sk: record
                    for record in SyncRecord.batch_get(keys, consistent_read=True, attributes_to_get=attributes)
                }
        return {
            account_id: AccountFreshness(
                _freshness(found.get(f"list#{account_id}")), _freshness(found.get(f"bal#{account_id}"))
            )
            for account_id in wanted
        }

    def note_listing(self, connection_id: str, account_id: str, freshness: Freshness) -> bool:
        """The ``list#<account_id>`` item (a live one on condition that it exists)."""
        record = SyncRecord(
            connection_id,
            f"list#{account_id}",
            account_id=account_id,
            committed_at=freshness.at,
            source=_source(live=freshness.live),
            listed_from=None if freshness.date_from is None else freshness.date_from.isoformat(),
        )
        return _save(record, "sync_listing", kept_only=freshness.live)

    def remember_account(self, connection_id: str, account_id: str, *, identifier: str) -> None:
        """An ``acct#<account_id>`` item with the identifier sealed (an IBAN is the user's data too)."""
        binding = _binding(connection_id, account_id, "account")
        blob = self._cipher().encrypt(identifier.encode(), binding=binding)
        with translated("sync_account"):
            SyncRecord(connection_id, f"acct#{account_id}", account_id=account_id, blob=blob).save()

    def accounts(self, connection_id: str) -> dict[str, str]:
        """The ``acct#`` items, their identifiers opened."""
        with translated("sync_accounts"):
            records = list(self._query(connection_id, "acct#"))
        return {
            record.account_id or "": self._cipher()
            .decrypt(bytes(record.blob or b""), binding=_binding(connection_id, record.account_id or "", "account"))
            .decode()
            for record in records
        }

    def schedule_sync(
        self,
        connection_id: str,
        *,
        user_id: str,
        bank_code: str,
        at: datetime,
        only_if_unscheduled: bool = False,
    ) -> bool:
        """One update of the head (created if need be): its ``SyncDueIndex`` keys, who and which bank, and a new
        ``schedule_id``; with ``only_if_unscheduled``, conditional on its not being in the index."""
        actions: list[Action] = [
            SyncRecord.sync_shard.set(sync_shard(connection_id)),
            SyncRecord.next_sync_at.set(epoch(at)),
            SyncRecord.user_id.set(user_id),
            SyncRecord.bank_code.set(bank_code),
            SyncRecord.schedule_id.set(uuid.uuid4().hex),
        ]
        condition = SyncRecord.sync_shard.does_not_exist() if only_if_unscheduled else None
        try:
            with translated("sync_schedule"):
                SyncRecord(connection_id, HEAD).update(actions=actions, condition=condition)
        except ConflictError:
            return False
        return True

    def due_syncs(self, shard: int, *, due_before: datetime, page_size: int | None = None) -> Iterator[DueSync]:
        """One ``Query`` of ``SyncDueIndex`` (``sync_shard = shard AND next_sync_at <= due_before``), paged lazily,
        most overdue first: the cost follows the number of due heads, never the table size. The index is eventually
        consistent: a stale entry is caught by the claim's condition."""
        with translated("sync_due", shard=shard):
            for record in SyncRecord.sync_due_index.query(
                shard, SyncRecord.next_sync_at <= epoch(due_before), page_size=page_size
            ):
                yield DueSync(
                    record.connection_id,
                    record.user_id or "",
                    record.bank_code or "",
                    int(record.next_sync_at or 0),
                    record.schedule_id or "",
                )

    def count_due_syncs(self, shard: int, *, due_before: datetime) -> int:
        """How many of the shard's heads are due by ``due_before`` (a ``Query`` with ``Select=COUNT``)."""
        with translated("sync_count_due", shard=shard):
            return int(SyncRecord.sync_due_index.count(shard, SyncRecord.next_sync_at <= epoch(due_before)))

    def unschedule_sync(self, due: DueSync) -> bool:
        """``REMOVE`` the head's index keys, conditional on its ``schedule_id`` still being ``due``'s."""
        try:
            with translated("sync_unschedule"):
                SyncRecord(due.connection_id, HEAD).update(
                    actions=[SyncRecord.sync_shard.remove(), SyncRecord.schedule_id.remove()],
                    condition=SyncRecord.schedule_id == due.schedule_id,
                )
        except ConflictError:
            return False
        return True

    def claim_sync(self, connection_id: str, *, now: datetime, next_at: datetime) -> bool:
        """One conditional update of the head: scheduled and due → the next time set; else ``False``."""
        head = SyncRecord(connection_id, HEAD)
        due = SyncRecord.sync_shard.exists() & (SyncRecord.next_sync_at <= epoch(now))
        try:
            with translated("sync_claim"):
                head.update(actions=[SyncRecord.next_sync_at.set(epoch(next_at))], condition=due)
        except ConflictError:
            return False
        return True

    def defer_sync(self, connection_id: str, *, at: datetime) -> None:
        """``SET next_sync_at`` while the head is scheduled (a purged or unscheduled one stays so)."""
        try:
            with translated("sync_defer"):
                SyncRecord(connection_id, HEAD).update(
                    actions=[SyncRecord.next_sync_at.set(epoch(at))], condition=SyncRecord.sync_shard.exists()
                )
        except ConflictError:
            return

    def claim_catchup(self, shard: int, *, now: datetime, next_at: datetime) -> bool:
        """One conditional update of the shard's catch-up mark: due (or never made) → ``next_at`` set."""
        mark = SyncRecord(f"catchup#{shard:02d}", CATCHUP)
        due = SyncRecord.next_sync_at.does_not_exist() | (SyncRecord.next_sync_at <= epoch(now))
        try:
            with translated("sync_catchup"):
                mark.update(actions=[SyncRecord.next_sync_at.set(epoch(next_at))], condition=due)
        except ConflictError:
            return False
        return True

    def purge(
        self,
        connection_id: str,
        account_ids: Collection[str] | None = None,
        *,
        balances_only: bool = False,
        transactions_only: bool = False,
    ) -> None:
        """Delete the accounts' items (the whole partition for ``None``); ``balances_only``: their ``bal#`` item;
        ``transactions_only``: their ``tx#``, ``chg#`` and ``list#`` items."""
        wanted = None if account_ids is None else set(account_ids)
        with translated("sync_purge"), SyncRecord.batch_write() as batch:
            for record in SyncRecord.query(connection_id, consistent_read=True):
                if record.sk == HEAD:
                    if wanted is None:
                        batch.delete(record)
                    continue
                if balances_only and not record.sk.startswith("bal#"):
                    continue
                if transactions_only and not record.sk.startswith(("tx#", "chg#", "list#")):
                    continue
                if wanted is None or record.account_id in wanted:
                    batch.delete(record)
