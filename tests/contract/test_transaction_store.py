"""The transaction store's contract, on the in-memory store (``tests/memory.py``) and the DynamoDB one on moto: changes
numbered in order and applied to the live transactions, the feed read from any number, one writer at a time per
connection (a dead writer's lease expires and what it wrote whole is committed), purges by account and connection,
and (DynamoDB) nothing of a transaction in clear in the table."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from aisp.errors import ConflictError
from aisp.models.accounts import SyncedTransactionItem
from aisp.models.bank import BankTransaction
from aisp.models.sync import ChangeKind, SyncedTransaction, TransactionChange
from tests.contract.conftest import DYNAMODB, MEMORY

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
CONNECTION = "cn_marc_13807"
ACCOUNT = "038-CPT30019654051"
OTHER = "038-CPT30019654052"
SECRET_TEXT = "CB PHARMACIE CENTRALE BREST"


def synced(number: int, account: str = ACCOUNT, *, amount: str = "-12.50") -> SyncedTransaction:
    return SyncedTransaction(
        transaction_id=f"tx_{account[-2:]}_{number:04d}",
        account_id=account,
        transaction=BankTransaction(
            id=f"TX{number:05d}",
            entry_reference=f"TX{number:05d}",
            amount=Decimal(amount),
            currency="EUR",
            credit_debit="debit",
            status="booked",
            booking_date=date(2026, 12, 1),
            value_date=date(2026, 12, 1),
            transaction_date=date(2026, 11, 30),
            remittance=(SECRET_TEXT, f"REF {number}"),
        ),
    )


def item_json(item: SyncedTransaction | None) -> str | None:
    """The API item's JSON text as the route serializes it (compact, ASCII-escaped), from the model."""
    if item is None:
        return None
    return json.dumps(SyncedTransactionItem.from_synced(item).model_dump(mode="json"), separators=(",", ":"))


def added(item: SyncedTransaction) -> TransactionChange:
    return TransactionChange(ChangeKind.ADDED, item.account_id, item.transaction_id, item)


def modified(item: SyncedTransaction) -> TransactionChange:
    return TransactionChange(ChangeKind.MODIFIED, item.account_id, item.transaction_id, item)


def removed(item: SyncedTransaction) -> TransactionChange:
    return TransactionChange(ChangeKind.REMOVED, item.account_id, item.transaction_id, None)


@pytest.fixture(params=[MEMORY, pytest.param(DYNAMODB, marks=pytest.mark.dynamodb)])
def store(request):
    if request.param == MEMORY:
        from tests.memory import MemoryTransactionStore

        return MemoryTransactionStore(lease_seconds=60)
    request.getfixturevalue("aws")
    from aisp import wiring
    from aisp.dal.sync import DynamoTransactionStore

    return DynamoTransactionStore(wiring.token_cipher, lease_seconds=60)


def test_changes_are_numbered_in_order_and_applied(store):
    first = [added(synced(n)) for n in range(1, 4)]

    assert store.append(CONNECTION, first, owner="sync-1", now=NOW) == 3
    entries, committed, synced_at = store.feed(CONNECTION, after=0, limit=100)

    assert (committed, synced_at) == (3, NOW)
    assert [(entry.seq, entry.change) for entry in entries] == list(enumerate(first, 1))
    assert store.live(CONNECTION, ACCOUNT).transactions == {
        item.transaction_id: item for item in (synced(1), synced(2), synced(3))
    }

    changed = synced(2, amount="-13.00")
    assert store.append(CONNECTION, [modified(changed), removed(synced(3))], owner="sync-2", now=NOW) == 5
    entries, committed, _ = store.feed(CONNECTION, after=3, limit=100)
    assert [(entry.seq, entry.change.kind) for entry in entries] == [(4, ChangeKind.MODIFIED), (5, ChangeKind.REMOVED)]
    assert entries[0].change.synced == changed and entries[1].change.synced is None
    assert store.live(CONNECTION, ACCOUNT).transactions == {
        synced(1).transaction_id: synced(1),
        changed.transaction_id: changed,
    }


def test_the_feed_pages_from_any_number_and_an_unknown_connection_is_empty(store):
    store.append(CONNECTION, [added(synced(n)) for n in range(1, 8)], owner="sync-1", now=NOW)

    pages, after = [], 0
    while True:
        entries, committed, _ = store.feed(CONNECTION, after=after, limit=3)
        if not entries:
            break
        pages.append([entry.seq for entry in entries])
        after = entries[-1].seq

    assert pages == [[1, 2, 3], [4, 5, 6], [7]] and committed == 7
    assert store.feed("cn_nobody", after=0, limit=10) == ([], 0, None)
    assert store.live("cn_nobody", ACCOUNT).transactions == {}


def test_hundreds_of_changes_of_several_accounts_read_back_in_order_from_any_number(store):
    # More changes than one item or one DynamoDB transaction holds, of two accounts interleaved, in two writes
    first = [added(synced(n, ACCOUNT if n % 3 else OTHER)) for n in range(1, 131)]
    store.append(CONNECTION, first, owner="sync-1", now=NOW)
    second = [removed(synced(n, ACCOUNT if n % 3 else OTHER)) for n in range(1, 12)]
    store.append(CONNECTION, second, owner="sync-1", now=NOW)
    expected = [(change.kind, change.account_id, change.transaction_id) for change in first + second]

    for limit, start in ((500, 0), (37, 0), (100, 98), (1, 139)):
        read, after = [], start
        while entries := store.feed(CONNECTION, after=after, limit=limit).entries:
            assert len(entries) <= limit
            read += entries
            after = entries[-1].seq
        assert [entry.seq for entry in read] == list(range(start + 1, 142))
        assert [(e.change.kind, e.change.account_id, e.change.transaction_id) for e in read] == expected[start:]
    assert store.feed(CONNECTION, after=0, limit=500).entries[0].change.synced == synced(1, ACCOUNT)
    assert len(store.live(CONNECTION, ACCOUNT).transactions) == len([n for n in range(12, 131) if n % 3])


def test_the_feeds_json_form_is_its_models_json_form(store):
    # Given added, modified and removed changes of two accounts, with unicode and escapes in their texts
    odd = synced(2, OTHER).model_copy(
        update={"transaction": synced(2).transaction.model_copy(update={"remittance": ("Café — 東京 🍜", '"\\')})}
    )
    changes = [added(synced(1)), added(odd), added(synced(3)), modified(synced(1, amount="-1.5E+2")), removed(odd)]
    store.append(CONNECTION, changes[:3], owner="sync-1", now=NOW)
    store.append(CONNECTION, changes[3:], owner="sync-1", now=NOW)

    for after, limit in ((0, 500), (0, 2), (2, 2), (4, 10)):
        # When a page is read as JSON and as models
        raw, page = (
            store.feed_json(CONNECTION, after=after, limit=limit),
            store.feed(CONNECTION, after=after, limit=limit),
        )

        # Then each item's JSON is the one the model gives for the change written, and the rest the same
        assert (raw.committed, raw.synced_at) == (page.committed, page.synced_at) == (5, NOW)
        written = changes[after : after + limit]
        assert [tuple(change) for change in raw.entries] == [
            (seq, change.kind, change.account_id, change.transaction_id, item_json(change.synced))
            for seq, change in enumerate(written, after + 1)
        ]
        # And the models read are those written (an amount equal in value: the item's form of it)
        assert [entry.change for entry in page.entries] == written
    assert store.feed_json("cn_nobody", after=0, limit=10) == ([], 0, None)


def test_one_writer_at_a_time_until_its_lease_expires(store):
    class Died(Exception):
        pass

    if hasattr(store, "write_hook"):  # the memory store: die after the first change, holding the lease
        calls = []

        def die(connection_id, seq):
            calls.append(seq)
            if len(calls) == 2:
                raise Died

        store.write_hook = die
        with pytest.raises(Died):
            store.append(CONNECTION, [added(synced(1)), added(synced(2))], owner="dead", now=NOW)
        store.write_hook = lambda connection_id, seq: None
    else:  # DynamoDB: a writer that took the lease and numbers, then died before committing
        from aisp.dal.tables import SyncRecord

        SyncRecord(
            CONNECTION, "feed", seq=2, committed=0, lease_owner="dead", lease_until=int(NOW.timestamp()) + 60
        ).save()

    # Another writer is refused while the lease runs
    with pytest.raises(ConflictError):
        store.append(CONNECTION, [added(synced(3))], owner="sync-2", now=NOW + timedelta(seconds=30))
    assert store.feed(CONNECTION, after=0, limit=10)[:2] == ([], 0)

    # Once it expired, the next writer takes it and its numbers come after the dead writer's
    assert store.append(CONNECTION, [added(synced(3))], owner="sync-2", now=NOW + timedelta(seconds=61)) == 3
    entries, committed, _ = store.feed(CONNECTION, after=0, limit=10)
    assert committed == 3
    numbers = [entry.seq for entry in entries]
    assert numbers[-1] == 3 and all(seq < 3 for seq in numbers[:-1])  # what the dead writer wrote whole, if any
    assert synced(3).transaction_id in store.live(CONNECTION, ACCOUNT).transactions


def test_a_writer_may_write_again_under_its_own_lease(store):
    store.append(CONNECTION, [added(synced(1))], owner="sync-1", now=NOW)

    assert store.append(CONNECTION, [added(synced(2))], owner="sync-1", now=NOW) == 2
    assert store.append(CONNECTION, [], owner="sync-3", now=NOW) == 2  # nothing new: the number stays


def test_a_write_diffed_against_an_older_read_is_refused(store):
    before = store.live(CONNECTION, ACCOUNT)
    assert before.version == 0
    # Nothing written since the read: the write goes in
    assert store.append(CONNECTION, [added(synced(1))], owner="sync-1", now=NOW, expected=before.version) == 1
    read = store.live(CONNECTION, ACCOUNT)
    assert read.version == 1

    # Another writer wrote after that read (the first read is older still): both refused, nothing numbered
    store.append(CONNECTION, [added(synced(2))], owner="live-read", now=NOW)
    for stale in (before, read):
        with pytest.raises(ConflictError):
            store.append(CONNECTION, [added(synced(2))], owner="sync-1", now=NOW, expected=stale.version)
    assert store.feed(CONNECTION, after=0, limit=10).committed == 2

    # Read again, it goes in; the version counts numbers handed out, so an empty write does not move it
    again = store.live(CONNECTION, ACCOUNT)
    assert again.version == 2
    assert store.append(CONNECTION, [], owner="sync-1", now=NOW, expected=again.version) == 2
    assert store.append(CONNECTION, [added(synced(3))], owner="sync-1", now=NOW, expected=again.version) == 3


def test_purging_accounts_forgets_their_transactions_and_changes(store):
    store.append(CONNECTION, [added(synced(1)), added(synced(2, OTHER)), added(synced(3))], owner="sync-1", now=NOW)
    store.append("cn_other", [added(synced(9))], owner="sync-1", now=NOW)

    store.purge(CONNECTION, [OTHER])

    assert store.live(CONNECTION, OTHER).transactions == {}
    assert set(store.live(CONNECTION, ACCOUNT).transactions) == {synced(1).transaction_id, synced(3).transaction_id}
    entries, _, _ = store.feed(CONNECTION, after=0, limit=10)
    assert {entry.change.account_id for entry in entries} == {ACCOUNT}

    store.purge(CONNECTION)
    assert store.live(CONNECTION, ACCOUNT).transactions == {} and store.feed(CONNECTION, after=0, limit=10) == (
        [],
        0,
        None,
    )
    assert store.live("cn_other", ACCOUNT).transactions == {synced(9).transaction_id: synced(9)}
    # A purged connection starts again from 1 when it is synced anew
    assert store.append(CONNECTION, [added(synced(4))], owner="sync-1", now=NOW) == 1


@pytest.mark.dynamodb
def test_the_table_holds_no_transaction_in_clear(aws):
    from aisp import wiring
    from aisp.dal.sync import DynamoTransactionStore
    from tests.conftest import SYNC_TABLE

    store = DynamoTransactionStore(wiring.token_cipher)
    store.append(CONNECTION, [added(synced(1))], owner="sync-1", now=NOW)

    store.remember_account(CONNECTION, ACCOUNT, identifier="FR7613807008043001965405158")
    raw = str(aws.dynamodb.scan(TableName=SYNC_TABLE)["Items"])
    assert SECRET_TEXT not in raw and "TX00001" not in raw and "12.50" not in raw
    assert "FR7613807008043001965405158" not in raw and "3001965405158" not in raw
    # A blob copied onto another item does not open there
    item = aws.dynamodb.get_item(
        TableName=SYNC_TABLE,
        Key={"connection_id": {"S": CONNECTION}, "sk": {"S": f"tx#{ACCOUNT}#{synced(1).transaction_id}"}},
    )["Item"]
    aws.dynamodb.put_item(
        TableName=SYNC_TABLE,
        Item={**item, "sk": {"S": f"tx#{ACCOUNT}#tx_51_0002"}, "transaction_id": {"S": "tx_51_0002"}},
    )
    from aisp.errors import TokenIntegrityError

    with pytest.raises(TokenIntegrityError):
        store.live(CONNECTION, ACCOUNT)


def test_a_change_item_reads_only_as_the_store_writes_it(aws):
    from aisp import wiring
    from aisp.dal.sync import DynamoTransactionStore
    from aisp.dal.tables import SyncRecord
    from aisp.errors import TokenIntegrityError

    # Given a change item (the first write of a connection) of an added and a removed transaction
    store = DynamoTransactionStore(wiring.token_cipher)
    store.append(CONNECTION, [added(synced(1)), removed(synced(2))], owner="sync-1", now=NOW)
    item = SyncRecord.get(CONNECTION, "chg#000000000002")
    binding = {"connection_id": CONNECTION, "account_id": ACCOUNT, "transaction_id": item.sk}
    tx1, tx2 = synced(1).transaction_id, synced(2).transaction_id
    one = item_json(synced(1))
    head = one[: one.index(',"transaction_id":')]

    # Then its pack is an index line and each item's JSON up to its ids, deflated
    index = f'[["added","{tx1}",null,{len(head)}],["removed","{tx2}",null,-1]]'
    spliced = b"s" + zlib.compress(f"{index}\n{head}".encode())
    assert wiring.token_cipher().decrypt(bytes(item.blob), binding=binding) == spliced
    expected = [(1, ChangeKind.ADDED, ACCOUNT, tx1, one), (2, ChangeKind.REMOVED, ACCOUNT, tx2, None)]
    assert [tuple(change) for change in store.feed_json(CONNECTION, after=0, limit=10).entries] == expected

    def sealed_as(plaintext):
        item.blob = wiring.token_cipher().encrypt(
            plaintext if isinstance(plaintext, bytes) else plaintext.encode(), binding=binding
        )
        item.save()

    # When its pack is sealed by hand as the store wrote it before (JSON deflated, JSON as is); Then it reads the same
    pack = (
        f'[{{"kind":"added","transaction_id":"{tx1}","synced":{synced(1).model_dump_json()}}},'
        f'{{"kind":"removed","transaction_id":"{tx2}","synced":null}}]'
    )
    for older in (b"z" + zlib.compress(pack.encode()), pack):
        sealed_as(older)
        assert [tuple(change) for change in store.feed_json(CONNECTION, after=0, limit=10).entries] == expected
        assert [entry.change for entry in store.feed(CONNECTION, after=0, limit=10).entries] == [
            added(synced(1)),
            removed(synced(2)),
        ]

    # When it holds anything else, sealed for it all the same; Then neither read serves it
    someone_elses = synced(1, OTHER).model_dump_json()
    for plaintext in (
        "{}",
        "[1]",
        '[{"kind":"added"}]',
        '[{"kind":"removed","transaction_id":7,"synced":null}]',
        f'[{{"kind":"renamed","transaction_id":"{synced(1).transaction_id}","synced":null}}]',
        f'[{{"kind":"added","transaction_id":"{synced(1).transaction_id}","synced":{someone_elses}}}]',
        f'[{{"kind":"added","transaction_id":"tx_other","synced":{synced(1).model_dump_json()}}}]',
        f'[{{"kind":"added","transaction_id":"{synced(1).transaction_id}","synced":[1]}}]',
        b"z" + b"not a deflated stream",
        b"z" + zlib.compress(b"[1"),
        b"s" + b"not a deflated stream",
        b"s" + zlib.compress(f"{index}".encode()),
        b"s" + zlib.compress(f"{index}\n{head[:-1]}".encode()),
        b"s" + zlib.compress(f"{index}\n{head}x".encode()),
        b"s" + zlib.compress(f"{index}\n{head}".encode())[:-4],
        b"s" + zlib.compress(f'[["renamed","{tx1}",null,{len(head)}]]\n{head}'.encode()),
        b"s" + zlib.compress(f'[["added",7,null,{len(head)}]]\n{head}'.encode()),
        b"s" + zlib.compress(f'[["added","{tx1}",null,-2]]\n{head}'.encode()),
        b"s" + zlib.compress(f'[["added","{tx1}",null]]\n{head}'.encode()),
        b"s" + zlib.compress(f'[["added","{tx1}",null,{len(head)}]]\n{head.replace("TX", "TÉ")}'.encode()),
        b"s" + zlib.compress(f'{{"added":1}}\n{head}'.encode()),
    ):
        sealed_as(plaintext)
        with pytest.raises(TokenIntegrityError):
            store.feed_json(CONNECTION, after=0, limit=10)
    # An older pack of the right shape whose transaction is not a whole one makes no item, so neither read serves it
    sealed_as(
        f'[{{"kind":"added","transaction_id":"{synced(1).transaction_id}",'
        f'"synced":{{"transaction_id":"{synced(1).transaction_id}","account_id":"{ACCOUNT}"}}}}]'
    )
    for read in (store.feed_json, store.feed):
        with pytest.raises(TokenIntegrityError):
            read(CONNECTION, after=0, limit=10)


def _schedule(store, connection_id=CONNECTION, at=NOW, **options):
    return store.schedule_sync(connection_id, user_id="user-marc", bank_code="13807", at=at, **options)


def test_a_due_sync_is_claimed_once_and_deferred_on_request(store):
    later = NOW + timedelta(hours=12)

    assert store.claim_sync(CONNECTION, now=NOW, next_at=later) is False  # not scheduled: nothing to claim
    assert _schedule(store) is True
    assert store.claim_sync(CONNECTION, now=NOW, next_at=later) is True
    assert store.claim_sync(CONNECTION, now=NOW, next_at=later) is False  # taken until then
    assert store.claim_sync(CONNECTION, now=later - timedelta(seconds=1), next_at=later) is False
    assert store.claim_sync(CONNECTION, now=later, next_at=later + timedelta(hours=12)) is True

    store.defer_sync(CONNECTION, at=NOW + timedelta(minutes=30))
    assert store.claim_sync(CONNECTION, now=NOW + timedelta(minutes=30), next_at=later) is True
    # Claims and feed numbers live side by side on the head
    assert store.append(CONNECTION, [added(synced(1))], owner="sync-1", now=NOW) == 1
    assert store.claim_sync(CONNECTION, now=NOW, next_at=later) is False
    assert store.feed(CONNECTION, after=0, limit=10).committed == 1


def test_the_due_index_gives_a_shards_due_connections_most_overdue_first(store):
    from aisp.models.sync import SYNC_SHARDS, sync_shard

    ids = [f"cn_{n:03d}" for n in range(40)]
    for offset, connection_id in enumerate(ids):
        _schedule(store, connection_id, at=NOW - timedelta(minutes=offset))
    _schedule(store, "cn_later", at=NOW + timedelta(minutes=1))

    found = {shard: list(store.due_syncs(shard, due_before=NOW, page_size=2)) for shard in range(SYNC_SHARDS)}

    assert sorted(due.connection_id for dues in found.values() for due in dues) == ids  # not cn_later: not due
    for shard, dues in found.items():
        assert all(sync_shard(due.connection_id) == shard for due in dues)
        assert [due.next_sync_at for due in dues] == sorted(due.next_sync_at for due in dues)
        assert store.count_due_syncs(shard, due_before=NOW) == len(dues)
    due = next(due for dues in found.values() for due in dues if due.connection_id == "cn_000")
    assert (due.user_id, due.bank_code, due.next_sync_at) == ("user-marc", "13807", int(NOW.timestamp()))


def test_a_connection_leaves_the_index_unless_scheduled_again_meanwhile(store):
    from aisp.models.sync import sync_shard

    _schedule(store)
    shard = sync_shard(CONNECTION)
    (seen,) = store.due_syncs(shard, due_before=NOW)

    assert store.unschedule_sync(seen) is True
    assert list(store.due_syncs(shard, due_before=NOW)) == []
    assert store.claim_sync(CONNECTION, now=NOW, next_at=NOW) is False
    store.defer_sync(CONNECTION, at=NOW)  # a failed run's deferral puts nothing back
    assert list(store.due_syncs(shard, due_before=NOW)) == []

    # A reconnection between the read and the removal wins: the removal names an older schedule
    _schedule(store)
    (stale,) = store.due_syncs(shard, due_before=NOW)
    _schedule(store, at=NOW - timedelta(minutes=1))
    assert store.unschedule_sync(stale) is False
    assert [due.connection_id for due in store.due_syncs(shard, due_before=NOW)] == [CONNECTION]


def test_the_catch_up_schedules_only_what_is_not_scheduled(store):
    from aisp.models.sync import sync_shard

    _schedule(store, at=NOW + timedelta(hours=3))

    assert _schedule(store, at=NOW, only_if_unscheduled=True) is False
    assert list(store.due_syncs(sync_shard(CONNECTION), due_before=NOW)) == []
    assert _schedule(store, "cn_older", at=NOW, only_if_unscheduled=True) is True
    assert [due.connection_id for due in store.due_syncs(sync_shard("cn_older"), due_before=NOW)] == ["cn_older"]


def test_the_purge_of_a_connection_takes_it_out_of_the_index(store):
    from aisp.models.sync import sync_shard

    _schedule(store)
    store.append(CONNECTION, [added(synced(1))], owner="sync-1", now=NOW)

    store.purge(CONNECTION, [ACCOUNT])  # an account: the schedule stays
    assert len(list(store.due_syncs(sync_shard(CONNECTION), due_before=NOW))) == 1
    store.purge(CONNECTION)
    assert list(store.due_syncs(sync_shard(CONNECTION), due_before=NOW)) == []
    assert store.claim_sync(CONNECTION, now=NOW, next_at=NOW) is False  # and a late claim brings nothing back


def test_a_shards_catch_up_is_taken_once_until_its_next_time(store):
    tomorrow = NOW + timedelta(days=1)

    assert store.claim_catchup(3, now=NOW, next_at=tomorrow) is True
    assert store.claim_catchup(3, now=NOW, next_at=tomorrow) is False
    assert store.claim_catchup(4, now=NOW, next_at=tomorrow) is True
    assert store.claim_catchup(3, now=tomorrow, next_at=tomorrow + timedelta(days=1)) is True


def test_the_store_remembers_which_account_is_which_and_forgets_it_with_the_account(store):
    store.append(CONNECTION, [added(synced(1)), added(synced(2, OTHER))], owner="sync-1", now=NOW)
    store.remember_account(CONNECTION, ACCOUNT, identifier="FR7613807008043001965405158")
    store.remember_account(CONNECTION, OTHER, identifier="4970 10** **** 1234")

    assert store.accounts(CONNECTION) == {ACCOUNT: "FR7613807008043001965405158", OTHER: "4970 10** **** 1234"}
    store.purge(CONNECTION, [OTHER])
    assert store.accounts(CONNECTION) == {ACCOUNT: "FR7613807008043001965405158"}
    store.purge(CONNECTION)
    assert store.accounts(CONNECTION) == {}


def test_balances_are_kept_per_account_replaced_and_forgotten_with_it(store):
    from aisp.models.bank import BankBalance

    first = [BankBalance(type="CLBD", name="Solde", amount=Decimal("4179.95"), currency="EUR", reference_date=None)]
    second = [
        BankBalance(type="VALU", name=None, amount=Decimal("-12.00"), currency="EUR", reference_date=date(2026, 12, 5))
    ]

    assert store.balances(CONNECTION, ACCOUNT) is None
    store.put_balances(CONNECTION, ACCOUNT, first, now=NOW)
    store.put_balances(CONNECTION, ACCOUNT, second, now=NOW + timedelta(hours=1))
    store.put_balances(CONNECTION, OTHER, first, now=NOW)

    assert store.balances(CONNECTION, ACCOUNT) == (second, NOW + timedelta(hours=1))
    store.purge(CONNECTION, [ACCOUNT])
    assert store.balances(CONNECTION, ACCOUNT) is None
    assert store.balances(CONNECTION, OTHER) == (first, NOW)


def test_a_purge_can_keep_an_accounts_balances_or_its_transactions(store):
    from aisp.models.bank import BankBalance

    balance = [BankBalance(type="CLBD", name=None, amount=Decimal("1"), currency="EUR", reference_date=None)]
    store.append(CONNECTION, [added(synced(1)), added(synced(2, OTHER))], owner="sync-1", now=NOW)
    for account in (ACCOUNT, OTHER):
        store.remember_account(CONNECTION, account, identifier=account)
        store.put_balances(CONNECTION, account, balance, now=NOW)

    store.purge(CONNECTION, [ACCOUNT], transactions_only=True)
    store.purge(CONNECTION, [OTHER], balances_only=True)

    assert store.live(CONNECTION, ACCOUNT).transactions == {} and store.balances(CONNECTION, ACCOUNT) == (balance, NOW)
    assert store.live(CONNECTION, OTHER).transactions and store.balances(CONNECTION, OTHER) is None
    assert set(store.accounts(CONNECTION)) == {ACCOUNT, OTHER}
    entries = store.feed(CONNECTION, after=0, limit=10).entries
    assert {entry.change.account_id for entry in entries} == {OTHER}


def test_freshness_says_when_and_by_whom_an_accounts_data_was_stored_and_a_live_read_never_starts_a_store(store):
    from aisp.models.bank import BankBalance
    from aisp.models.sync import AccountFreshness, Freshness

    balance = [BankBalance(type="CLBD", name=None, amount=Decimal("1"), currency="EUR", reference_date=None)]
    later = NOW + timedelta(hours=3)
    assert store.freshness(CONNECTION, ACCOUNT) == AccountFreshness(None, None)

    # A live read of an account no sync stored keeps nothing
    assert not store.note_listing(CONNECTION, ACCOUNT, Freshness(NOW, live=True, date_from=date(2026, 11, 1)))
    assert not store.put_balances(CONNECTION, ACCOUNT, balance, now=NOW, live=True)
    assert store.freshness(CONNECTION, ACCOUNT) == AccountFreshness(None, None)
    assert store.balances(CONNECTION, ACCOUNT) is None

    # A sync starts it; a live read then replaces it, saying so
    assert store.note_listing(CONNECTION, ACCOUNT, Freshness(NOW, live=False, date_from=date(2026, 9, 7)))
    assert store.put_balances(CONNECTION, ACCOUNT, balance, now=NOW)
    assert store.freshness(CONNECTION, ACCOUNT) == AccountFreshness(
        Freshness(NOW, False, date(2026, 9, 7)), Freshness(NOW, False)
    )
    assert store.note_listing(CONNECTION, ACCOUNT, Freshness(later, live=True, date_from=date(2026, 11, 1)))
    assert store.put_balances(CONNECTION, ACCOUNT, balance, now=later, live=True)
    assert store.freshness(CONNECTION, ACCOUNT) == AccountFreshness(
        Freshness(later, True, date(2026, 11, 1)), Freshness(later, True)
    )
    assert store.balances(CONNECTION, ACCOUNT) == (balance, later)
    assert store.freshness(CONNECTION, OTHER) == AccountFreshness(None, None)

    # Forgotten with what it describes
    store.purge(CONNECTION, [ACCOUNT], transactions_only=True)
    assert store.freshness(CONNECTION, ACCOUNT) == AccountFreshness(None, Freshness(later, True))
    store.purge(CONNECTION, [ACCOUNT])
    assert store.freshness(CONNECTION, ACCOUNT) == AccountFreshness(None, None)
    store.note_listing(CONNECTION, OTHER, Freshness(NOW, live=False, date_from=date(2026, 9, 7)))
    store.purge(CONNECTION)
    assert store.freshness(CONNECTION, OTHER) == AccountFreshness(None, None)


def test_the_freshness_of_many_accounts_is_each_accounts_freshness(store):
    from aisp.models.bank import BankBalance
    from aisp.models.sync import AccountFreshness, Freshness

    # Given 60 accounts (120 keys: more than one BatchGetItem call takes), some listed, some with balances
    balance = [BankBalance(type="CLBD", name=None, amount=Decimal("1"), currency="EUR", reference_date=None)]
    accounts = [f"038-CPT{n:011d}" for n in range(60)]
    for n, account in enumerate(accounts):
        if n % 2 == 0:
            store.note_listing(CONNECTION, account, Freshness(NOW, live=False, date_from=date(2026, 9, n % 28 + 1)))
        if n % 3 == 0:
            store.put_balances(CONNECTION, account, balance, now=NOW + timedelta(minutes=n))
    store.note_listing("cn_other_13807", "038-CPT99999999999", Freshness(NOW, live=False, date_from=date(2026, 9, 1)))

    # When they are read at once, with an account asked twice and one the store never kept
    found = store.freshness_many(CONNECTION, [*accounts, accounts[0], "038-CPT99999999999"])

    # Then each account asked is answered once, as freshness() answers it alone
    assert set(found) == {*accounts, "038-CPT99999999999"}
    for n, account in enumerate(accounts):
        listed = Freshness(NOW, False, date(2026, 9, n % 28 + 1)) if n % 2 == 0 else None
        balances = Freshness(NOW + timedelta(minutes=n), False) if n % 3 == 0 else None
        assert found[account] == AccountFreshness(listed, balances) == store.freshness(CONNECTION, account)
    assert found["038-CPT99999999999"] == AccountFreshness(None, None)  # another connection's is not this one's
    assert store.freshness_many(CONNECTION, []) == {}


def _dated(number: int, *, status: str = "booked", account: str = ACCOUNT, **days: date | None) -> SyncedTransaction:
    """A transaction with the dates given (the others ``None``)."""
    item = synced(number, account)
    dates = {"booking_date": None, "value_date": None, "transaction_date": None, **days}
    return item.model_copy(update={"transaction": item.transaction.model_copy(update={"status": status, **dates})})


def test_a_windowed_read_gives_the_days_from_since_and_every_pending_or_undated_one(store):
    since = date(2026, 12, 1)
    # Given transactions either side of the window's first day (judged by booking, else value, else transaction date)
    inside = [
        _dated(1, booking_date=since, value_date=date(2026, 11, 28)),
        _dated(2, value_date=date(2026, 12, 2), transaction_date=date(2026, 11, 20)),
        _dated(3, transaction_date=date(2026, 12, 5)),
        _dated(4, status="pending", transaction_date=date(2026, 10, 1)),  # pending: whatever its day
        _dated(5),  # no date at all
    ]
    outside = [
        _dated(6, booking_date=date(2026, 11, 30), transaction_date=date(2026, 12, 3)),
        _dated(7, value_date=date(2026, 9, 1)),
    ]
    store.append(CONNECTION, [added(item) for item in (*inside, *outside)], owner="sync-1", now=NOW)
    store.append(CONNECTION, [added(_dated(8, account=OTHER, booking_date=since))], owner="sync-1", now=NOW)

    # When the account is read from that day
    window = store.live(CONNECTION, ACCOUNT, since=since)

    # Then only those are given, whole, with the version a whole read gives
    assert window.transactions == {item.transaction_id: item for item in inside}
    assert window.version == store.live(CONNECTION, ACCOUNT).version == 8  # the numbers handed out

    # A transaction whose day moves is judged by its new one
    moved_in = _dated(7, booking_date=date(2026, 12, 4))
    moved_out = _dated(1, booking_date=date(2026, 11, 2))
    settled = _dated(4, booking_date=date(2026, 10, 2))  # the pending one, booked (modified, for the test's sake)
    store.append(CONNECTION, [modified(moved_in), modified(moved_out), modified(settled)], owner="sync-1", now=NOW)
    window = store.live(CONNECTION, ACCOUNT, since=since)
    assert set(window.transactions) == {item.transaction_id for item in (inside[1], inside[2], inside[4], moved_in)}

    # A write after a windowed read refuses a write diffed against it
    store.append(CONNECTION, [removed(inside[4])], owner="live-read", now=NOW)
    with pytest.raises(ConflictError):
        store.append(CONNECTION, [added(synced(9))], owner="sync-1", now=NOW, expected=window.version)


def test_kept_transactions_are_read_by_id_in_batches(store):
    # Given 130 transactions of the account (more keys than one batch read takes), one removed, and another account's
    items = [synced(n) for n in range(1, 131)]
    store.append(CONNECTION, [added(item) for item in items], owner="sync-1", now=NOW)
    store.append(CONNECTION, [removed(items[0]), added(synced(1, OTHER))], owner="sync-1", now=NOW)

    # When they are asked by id, with unknown ids, the removed one and the other account's
    asked = [item.transaction_id for item in items] + ["tx_unknown", synced(1, OTHER).transaction_id]
    found = store.stored(CONNECTION, ACCOUNT, asked)

    # Then the account's kept ones come, whole, and nothing else
    assert found == {item.transaction_id: item for item in items[1:]}
    assert store.stored(CONNECTION, ACCOUNT, []) == {}
    assert store.stored(CONNECTION, OTHER, [synced(1, OTHER).transaction_id]) == {
        synced(1, OTHER).transaction_id: synced(1, OTHER)
    }


def test_a_transaction_item_written_before_days_were_kept_is_in_every_window(aws):
    from aisp import wiring
    from aisp.dal.sync import DynamoTransactionStore
    from tests.conftest import SYNC_TABLE

    # Given an old booked transaction whose item has no day (written by an earlier release)
    store = DynamoTransactionStore(wiring.token_cipher)
    old = _dated(1, booking_date=date(2026, 1, 5))
    store.append(CONNECTION, [added(old), added(_dated(2, booking_date=date(2026, 1, 6)))], owner="sync-1", now=NOW)
    key = {"connection_id": {"S": CONNECTION}, "sk": {"S": f"tx#{ACCOUNT}#{old.transaction_id}"}}
    item = aws.dynamodb.get_item(TableName=SYNC_TABLE, Key=key)["Item"]
    assert item["day"] == {"S": "2026-01-05"}  # what a write keeps now (its TTL says as much)
    aws.dynamodb.update_item(
        TableName=SYNC_TABLE, Key=key, UpdateExpression="REMOVE #d", ExpressionAttributeNames={"#d": "day"}
    )

    # Then a windowed read still gives it (not knowing its day), and not the other one
    assert store.live(CONNECTION, ACCOUNT, since=date(2026, 12, 1)).transactions == {old.transaction_id: old}
