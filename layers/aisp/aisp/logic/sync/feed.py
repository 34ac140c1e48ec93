"""``GET /v1/connections/{bank_code}/transactions/sync``: what changed after the client's cursor, from the store (no
bank call, no quota spent). The cursor is the last feed number the client received, sealed for its user, bank and
connection. The page is served from the stored JSON, each item's text spliced in, no model built a transaction.
Design: ``docs/sync.md`` (The route and its cursor).
"""

from __future__ import annotations

from aisp import errors
from aisp.logic.services import AccountServices
from aisp.models.accounts import BalanceItem, BalancesResponse, TransactionsSyncPage
from aisp.models.connection import ConnectionStatus
from aisp.models.sync import ChangeKind

__all__ = ["read_changes", "stored_balances"]


def stored_balances(
    user_id: str, bank_code: str, account_id: str, *, services: AccountServices
) -> BalancesResponse | None:
    """The balances the last sync kept for this account, with when it read them; ``None`` when it kept none (or the
    connection is not the user's any more): the caller reads the bank."""
    connection = services.connections.connections.find(user_id, bank_code)
    if connection is None or connection.status is not ConnectionStatus.ACTIVE:
        return None
    kept = services.transactions.balances(connection.connection_id, account_id)
    if kept is None:
        return None
    balances, synced_at = kept
    return BalancesResponse(balances=[BalanceItem.from_bank(balance) for balance in balances], synced_at=synced_at)


def read_changes(
    user_id: str, bank_code: str, *, cursor: str | None, count: int, services: AccountServices
) -> TransactionsSyncPage:
    """Up to ``count`` changes after ``cursor`` (from the start without one), in the order they happened: the
    response's JSON form, the items' JSON texts as the store kept them (``TransactionsSyncPage.model()`` validates it).

    Raises
    ------
    UnknownBankError, ConnectionNotFoundError
        No such bank; no connection of this user to it (or one they deleted).
    InvalidCursorError
        A cursor that does not open for this user, bank and connection, or older than 400 days.
    """
    services.connections.registry.get(bank_code)
    connection = services.connections.connections.find(user_id, bank_code)
    if connection is None or connection.status is ConnectionStatus.REVOKED:
        raise errors.ConnectionNotFoundError("connection not found", details={"bank_code": bank_code})
    now = services.connections.clock.now()
    bound = {"user_id": user_id, "bank_code": bank_code, "connection_id": connection.connection_id}
    after = 0 if cursor is None else services.cursors().open_feed(cursor, now=now, **bound)
    page = services.transactions.feed_json(connection.connection_id, after=after, limit=count)
    added: list[str] = []
    modified: list[str] = []
    removed: list[dict[str, str]] = []
    for change in page.entries:
        if change.item is None:
            removed.append({"transaction_id": change.transaction_id, "account_id": change.account_id})
        elif change.kind is ChangeKind.ADDED:
            added.append(change.item)
        else:
            modified.append(change.item)
    full = len(page.entries) == count
    # A short page read everything up to the committed number (numbers a dead writer never wrote are skipped).
    reached = page.entries[-1].seq if full else max(after, page.committed)
    return TransactionsSyncPage(
        added=added,
        modified=modified,
        removed=removed,
        next_cursor=services.cursors().seal_feed(reached, now=now, **bound),
        has_more=reached < page.committed,
        synced_at=page.synced_at,
    )
