"""The feed route serves the stored transactions' JSON without building a model a transaction: its body must be, byte
for byte, what the model path (``SyncedTransactionItem.from_synced`` into ``TransactionsSyncResponse``, serialized
by Powertools as a route's return) gives for the same feed: every change kind, removals, unicode and escapes, every
optional field set and null, amounts in every form the bank's Decimal can take."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from aisp.models.accounts import (
    RemovedTransactionItem,
    SyncedTransactionItem,
    TransactionsSyncPage,
    TransactionsSyncResponse,
    synced_item,
    synced_item_head,
    synced_item_json,
)
from aisp.models.bank import BankTransaction
from aisp.models.sync import ChangeKind, SyncedTransaction, TransactionChange
from functions.accounts import app as accounts_app

USER, BANK = "user-marc", "13807"
MAIN, CARD = "038-CPT30019654051", "038-CARD-4242"


def _synced(number, account=MAIN, *, pending=None, **fields):
    values = {
        "id": f"TX{number:05d}",
        "entry_reference": f"REF{number:05d}",
        "amount": Decimal("-12.50"),
        "currency": "EUR",
        "credit_debit": "debit",
        "status": "booked",
        "booking_date": date(2026, 12, 1),
        "value_date": date(2026, 12, 2),
        "transaction_date": date(2026, 11, 30),
        "remittance": ("CB PHARMACIE CENTRALE BREST",),
    } | fields
    return SyncedTransaction(
        transaction_id=f"tx_{number:024d}",
        account_id=account,
        pending_transaction_id=pending,
        transaction=BankTransaction(**values),
    )


# Each one differs from the plain one where the JSON could: text, escapes, nulls, amounts, statuses, lists.
VARIANTS = [
    _synced(1),
    _synced(
        2, remittance=("Café crème — Brest", "東京 ラーメン", "🍜 x2", 'a "quoted" \\ back\\slash', "tab\tnew\nline")
    ),
    _synced(3, id=None, entry_reference=None, booking_date=None, value_date=None, transaction_date=None, remittance=()),
    _synced(4, amount=Decimal("-1.5E+2")),
    _synced(5, amount=Decimal("-0.00"), status="rejected"),
    _synced(6, amount=Decimal("0"), status="information"),
    _synced(7, amount=Decimal("1234567890.123456789"), credit_debit="credit", status="future"),
    _synced(8, amount=Decimal("25E-3"), status="other", currency="USD"),
    _synced(9, status="pending", booking_date=None),
    _synced(10, pending="tx_" + "9" * 24),
    _synced(11, CARD, remittance=("PAIEMENT PAR CARTE\u00a0X4242", "\u0000\u001f\u007f\u2028")),
]


def _changes():
    """Added, then modified (new texts), then removed, across two accounts: every kind, in feed order."""
    added = [TransactionChange(ChangeKind.ADDED, item.account_id, item.transaction_id, item) for item in VARIANTS]
    changed = [
        item.model_copy(update={"transaction": item.transaction.model_copy(update={"remittance": ("CORRIGÉ ✓",)})})
        for item in VARIANTS[:3]
    ]
    modified = [TransactionChange(ChangeKind.MODIFIED, item.account_id, item.transaction_id, item) for item in changed]
    removed = [
        TransactionChange(ChangeKind.REMOVED, item.account_id, item.transaction_id, None) for item in VARIANTS[8:]
    ]
    return added + modified + removed


@pytest.fixture
def fed(account_wired, active_connection, transaction_store, clock):
    connection = active_connection(USER, BANK)
    changes = _changes()
    transaction_store.append(connection.connection_id, changes[:9], owner="test", now=clock.now())
    transaction_store.append(connection.connection_id, changes[9:], owner="test", now=clock.now())
    return transaction_store, connection.connection_id, changes


def _model_body(store, connection_id, *, after, count, next_cursor):
    """The model path: the same feed page through ``from_synced``, returned as a model by a Powertools route."""
    entries, committed, synced_at = store.feed(connection_id, after=after, limit=count)
    reached = entries[-1].seq if len(entries) == count else max(after, committed)

    def items(kind):
        return [
            SyncedTransactionItem.from_synced(entry.change.synced)
            for entry in entries
            if entry.change.synced is not None and entry.change.kind is kind
        ]

    removed = [
        RemovedTransactionItem(transaction_id=entry.change.transaction_id, account_id=entry.change.account_id)
        for entry in entries
        if entry.change.synced is None
    ]
    model = TransactionsSyncResponse(
        added=items(ChangeKind.ADDED),
        modified=items(ChangeKind.MODIFIED),
        removed=removed,
        next_cursor=next_cursor,
        has_more=reached < committed,
        synced_at=synced_at,
    )
    reference = APIGatewayHttpResolver(enable_validation=True)
    reference.get("/model")(lambda: model)
    event = {
        "version": "2.0",
        "routeKey": "GET /model",
        "rawPath": "/model",
        "rawQueryString": "",
        "headers": {},
        "requestContext": {"http": {"method": "GET", "path": "/model"}, "stage": "$default"},
        "isBase64Encoded": False,
    }
    return reference.resolve(event, {})["body"], reached


def _feed_call(load_event, lambda_context, **query):
    event = load_event("accounts/sync_transactions.json")
    event["queryStringParameters"] = query
    event["rawQueryString"] = urlencode(query)
    response = accounts_app.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 200, response["body"]
    assert response["headers"]["Content-Type"] == "application/json"
    return response["body"]


@pytest.mark.parametrize("count", [4, 500])
def test_the_routes_body_is_the_model_paths_byte_for_byte(fed, load_event, lambda_context, count):
    # Given a feed of every kind of change, read in pages of `count`
    store, connection_id, changes = fed
    query, after, pages = {"count": str(count)}, 0, 0
    while True:
        # When the route answers a page
        body = _feed_call(load_event, lambda_context, **query)
        answer = json.loads(body)
        # Then its bytes are the model path's for the same page (the cursor is sealed afresh each time: taken as is)
        expected, after = _model_body(store, connection_id, after=after, count=count, next_cursor=answer["next_cursor"])
        assert body == expected
        pages += 1
        if not answer["has_more"]:
            break
        query = {"count": str(count), "cursor": answer["next_cursor"]}
    assert after == len(changes) and pages == -(-len(changes) // count)


def test_every_change_kind_and_field_reaches_the_body(fed, load_event, lambda_context):
    # Given the feed; When it is read in one page
    answer = TransactionsSyncResponse.model_validate_json(_feed_call(load_event, lambda_context, count="500"))

    # Then every change is there, in its list, with the model's values
    assert [item.transaction_id for item in answer.added] == [item.transaction_id for item in VARIANTS]
    assert [item.remittance for item in answer.modified] == [["CORRIGÉ ✓"]] * 3
    assert [item.transaction_id for item in answer.removed] == [item.transaction_id for item in VARIANTS[8:]]
    amounts = {item.id: item.amount for item in answer.added}
    assert (amounts["TX00004"], amounts["TX00005"], amounts["TX00006"]) == ("-150", "0.00", "0")
    assert (amounts["TX00007"], amounts["TX00008"]) == ("1234567890.123456789", "0.025")
    assert answer.added[1].remittance == list(VARIANTS[1].transaction.remittance)
    assert answer.added[2].model_dump(include={"id", "booking_date", "remittance"}) == {
        "id": None,
        "booking_date": None,
        "remittance": [],
    }
    assert answer.added[9].pending_transaction_id == "tx_" + "9" * 24
    assert answer.synced_at is not None and not answer.has_more


def test_an_empty_feed_answers_like_the_model(
    account_wired, active_connection, transaction_store, load_event, lambda_context
):
    # Given a connection never synced
    connection = active_connection(USER, BANK)

    # When its feed is read
    body = _feed_call(load_event, lambda_context, count="100")

    # Then the body is the model path's: empty lists, synced_at null
    cursor = json.loads(body)["next_cursor"]
    expected, _ = _model_body(transaction_store, connection.connection_id, after=0, count=100, next_cursor=cursor)
    assert body == expected and json.loads(body)["synced_at"] is None


def test_a_stored_items_json_form_maps_to_the_models(fed):
    # Given each stored transaction's JSON form, as the store reads it
    for item in VARIANTS:
        stored = item.model_dump(mode="json")

        # When it is mapped without a model; Then it is the model's JSON form, keys in the same order
        expected = SyncedTransactionItem.from_synced(item).model_dump(mode="json")
        assert list(synced_item(stored).items()) == list(expected.items())


def test_the_page_validates_into_the_response_model():
    # Given a page made from the stored JSON
    stored = VARIANTS[1].model_dump(mode="json")
    page = TransactionsSyncPage(
        added=[synced_item_json(synced_item_head(stored), stored["transaction_id"], MAIN, None)],
        modified=[],
        removed=[{"transaction_id": "tx_1", "account_id": MAIN}],
        next_cursor="s1.x",
        has_more=True,
        synced_at=None,
    )

    # When it is validated; Then the model says what the JSON says
    model = page.model()
    assert model.added[0] == SyncedTransactionItem.from_synced(VARIANTS[1])
    assert json.loads(page.json()) == model.model_dump(mode="json")
