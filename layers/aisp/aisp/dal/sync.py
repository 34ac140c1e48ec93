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
from aisp.models.accounts import synced_item_head, synced_item_json
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
    from pynamodb.expressions.condition import Condition
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
# A change item's pack, by the byte it starts with (docs/sync.md, The route): "s", an index line then each item's
# head, deflated (written now); "z", the changes' JSON deflated; "[", that JSON as is (both written before, still read).
_SPLICED: Final = b"s"
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


def _set_next(record: SyncRecord, at: datetime, condition: Condition, operation: str) -> bool:
    """``SET next_sync_at`` on ``record`` where ``condition`` holds; ``False`` where it did not."""
    try:
        with translated(operation):
            record.update(actions=[SyncRecord.next_sync_at.set(epoch(at))], condition=condition)
    except ConflictError:
        return False
    return True


def _pack(changes: Sequence[tuple[TransactionChange, str | None]]) -> bytes:
    """A spliced pack: one JSON line, ``[kind, transaction_id, pending_transaction_id, length]`` a change (length
    ``-1``: a removal, no item), then each item's head (:func:`synced_item_head`, ASCII) one after the other."""
    index = [
        [
            change.kind.value,
            change.transaction_id,
            None if change.synced is None else change.synced.pending_transaction_id,
            -1 if head is None else len(head),
        ]
        for change, head in changes
    ]
    return (json.dumps(index, separators=(",", ":")) + "\n" + "".join(head or "" for _, head in changes)).encode()


def _spliced(payload: bytes, account_id: str, first: int) -> list[StoredChange]:
    """A spliced pack's changes: each item's JSON text is its head as written and its ids from the index (so an item
    is always its change's); the heads are sliced, never parsed."""
    text = payload.decode("ascii")
    newline = text.index("\n")
    index = json.loads(text[:newline])
    if not isinstance(index, list):
        raise TypeError(type(index).__name__)
    changes: list[StoredChange] = []
    at = newline + 1
    for seq, (kind, transaction_id, pending, length) in enumerate(index, first):
        if not isinstance(transaction_id, str) or not (pending is None or isinstance(pending, str)):
            raise TypeError("ids")
        if not isinstance(length, int) or length < -1:
            raise TypeError("length")
        item = None
        if length >= 0:
            head = text[at : at + length]
            if len(head) != length or not head.startswith('{"id":'):
                raise ValueError("head")
            item, at = synced_item_json(head, transaction_id, account_id, pending), at + length
        changes.append(StoredChange(seq, ChangeKind(kind), account_id, transaction_id, item))
    if at != len(text):
        raise ValueError("trailing bytes")
    return changes


def _parsed(plaintext: bytes, account_id: str, first: int) -> list[StoredChange]:
    """An older pack's changes (its JSON: each change's kind, transaction id and ``SyncedTransaction`` JSON form),
    each item's JSON text made from its transaction's."""
    packed = json.loads(plaintext)
    if not isinstance(packed, list):
        raise TypeError(type(packed).__name__)
    changes: list[StoredChange] = []
    for seq, change in enumerate(packed, first):
        transaction_id, synced = change["transaction_id"], change["synced"]
        if not isinstance(transaction_id, str):
            raise TypeError("transaction_id")
        item = None
        if synced is not None:
            if (
                not isinstance(synced, dict)
                or synced.get("account_id") != account_id
                or synced.get("transaction_id") != transaction_id
            ):
                raise TypeError("not the item's")
            item = synced_item_json(
                synced_item_head(synced), transaction_id, account_id, synced["pending_transaction_id"]
            )
        changes.append(StoredChange(seq, ChangeKind(change["kind"]), account_id, transaction_id, item))
    return changes


def _from_item(item: str) -> SyncedTransaction:
    """The transaction an item's JSON text says (the model path: the amount as the item gives it, equal in value)."""
    fields = json.loads(item)
    ids = {key: fields.pop(key) for key in ("transaction_id", "account_id", "pending_transaction_id")}
    return SyncedTransaction.model_validate_json(json.dumps({**ids, "transaction": fields}))


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
        """:meth:`feed_json`'s page, each transaction validated into its model from its item's JSON."""
        page = self.feed_json(connection_id, after=after, limit=limit)
        try:
            entries = [
                FeedEntry(
                    change.seq,
                    TransactionChange(
                        change.kind,
                        change.account_id,
                        change.transaction_id,
                        None if change.item is None else _from_item(change.item),
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
        """A change item's changes, opened, numbered from its ``seq``, each item's JSON text made from the pack's
        bytes without parsing them (an older pack: from its JSON). No model is built: the blob is authenticated
        (sealed, bound to this item), so it holds what :meth:`append` wrote from validated models."""
        account_id = record.account_id or ""
        plaintext = self._cipher().decrypt(
            bytes(record.blob or b""), binding=_binding(connection_id, account_id, record.sk)
        )
        first = int(record.seq or 0)
        try:
            if plaintext.startswith(_SPLICED):
                return _spliced(zlib.decompress(plaintext[len(_SPLICED) :]), account_id, first)
            if plaintext.startswith(_DEFLATED):
                plaintext = zlib.decompress(plaintext[len(_DEFLATED) :])
            return _parsed(plaintext, account_id, first)
        except (ValueError, TypeError, KeyError, ArithmeticError, zlib.error):
            raise TokenIntegrityError("stored changes are malformed", details={"operation": "sync"}) from None

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
        heads = [
            None if change.synced is None else synced_item_head(json.loads(text or ""))
            for change, text in zip(changes, texts, strict=True)
        ]
        sizes = [len(change.transaction_id) + len(head or "") + 64 for change, head in zip(changes, heads, strict=True)]
        for chunk in _chunks(changes, sizes):
            self._write(
                connection_id, [(first + index, changes[index], texts[index], heads[index]) for index in chunk], now
            )
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
        self, connection_id: str, numbered: list[tuple[int, TransactionChange, str | None, str | None]], now: datetime
    ) -> None:
        """One change item (``chg#<its last number>``) and the transactions its changes leave, in one transaction."""
        account_id, cipher = numbered[0][1].account_id, self._cipher()
        key = _change_key(numbered[-1][0])
        entry = SyncRecord(
            connection_id,
            key,
            seq=numbered[0][0],
            account_id=account_id,
            blob=cipher.encrypt(
                _SPLICED + zlib.compress(_pack([(change, head) for _, change, _, head in numbered])),
                binding=_binding(connection_id, account_id, key),
            ),
            expires_at=now + timedelta(days=FEED_KEEP_DAYS),
        )
        with translated("sync_write"), TransactWrite(connection=LowLevel()) as transaction:
            for seq, change, text, _ in numbered:
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
        due = SyncRecord.sync_shard.exists() & (SyncRecord.next_sync_at <= epoch(now))
        return _set_next(SyncRecord(connection_id, HEAD), next_at, due, "sync_claim")

    def defer_sync(self, connection_id: str, *, at: datetime) -> None:
        """``SET next_sync_at`` while the head is scheduled (a purged or unscheduled one stays so)."""
        _set_next(SyncRecord(connection_id, HEAD), at, SyncRecord.sync_shard.exists(), "sync_defer")

    def claim_catchup(self, shard: int, *, now: datetime, next_at: datetime) -> bool:
        """One conditional update of the shard's catch-up mark: due (or never made) → ``next_at`` set."""
        due = SyncRecord.next_sync_at.does_not_exist() | (SyncRecord.next_sync_at <= epoch(now))
        return _set_next(SyncRecord(f"catchup#{shard:02d}", CATCHUP), next_at, due, "sync_catchup")

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
