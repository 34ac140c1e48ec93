"""The store keeps only what the consent covers: what a consent no longer covers is forgotten (an account's
transactions and changes, its balances, or both), and a deleted connection's whole feed. Design: ``docs/sync.md``.
"""

from __future__ import annotations

from collections.abc import Collection

from aisp.logic.ports import TransactionStore
from aisp.models.connection import CardReference, ConsentSnapshot
from aisp.observability import logger

__all__ = ["purge_accounts_not_in", "purge_unconsented"]


def purge_accounts_not_in(
    store: TransactionStore, connection_id: str, *, transactions: Collection[str], balances: Collection[str]
) -> list[str]:
    """Forget what the store holds of each account beyond what ``transactions`` and ``balances`` (account ids) still
    cover: an account in neither entirely, one only in ``balances`` its transactions and changes, one only in
    ``transactions`` its balances. Returns the accounts forgotten entirely."""
    held = set(store.accounts(connection_id))
    gone = sorted(held - set(transactions) - set(balances))
    balances_only = sorted((held & set(balances)) - set(transactions))
    no_balances = sorted((held & set(transactions)) - set(balances))
    if gone:
        store.purge(connection_id, gone)
    if balances_only:
        store.purge(connection_id, balances_only, transactions_only=True)
    if no_balances:
        store.purge(connection_id, no_balances, balances_only=True)
    if gone or balances_only or no_balances:
        logger.info(
            "synced data purged", accounts=len(gone), transactions=len(balances_only), balances=len(no_balances)
        )
    return gone


def _named(store: TransactionStore, connection_id: str, listed: Collection[str | CardReference]) -> list[str]:
    covered = {item.card if isinstance(item, CardReference) else item for item in listed}
    return [account_id for account_id, identifier in store.accounts(connection_id).items() if identifier in covered]


def purge_unconsented(store: TransactionStore, connection_id: str, consent: ConsentSnapshot | None) -> list[str]:
    """Forget the transactions and balances of the accounts (IBANs, cards) the consent's lists no longer name."""
    transactions = _named(store, connection_id, consent.transactions if consent is not None else [])
    balances = _named(store, connection_id, consent.balances if consent is not None else [])
    return purge_accounts_not_in(store, connection_id, transactions=transactions, balances=balances)
