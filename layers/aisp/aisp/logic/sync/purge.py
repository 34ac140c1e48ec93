"""The store keeps only what the consent covers: the accounts a consent no longer covers for transactions are
forgotten (their transactions and changes), and a deleted connection's whole feed. Design: ``docs/sync.md``.
"""

from __future__ import annotations

from collections.abc import Collection

from aisp.logic.ports import TransactionStore
from aisp.models.connection import CardReference, ConsentSnapshot
from aisp.observability import logger

__all__ = ["purge_accounts_not_in", "purge_unconsented"]


def purge_accounts_not_in(store: TransactionStore, connection_id: str, keep: Collection[str]) -> list[str]:
    """Forget every account the store holds but ``keep`` (account ids); the ones forgotten."""
    gone = sorted(set(store.accounts(connection_id)) - set(keep))
    if gone:
        store.purge(connection_id, gone)
        logger.info("synced accounts purged", accounts=len(gone))
    return gone


def purge_unconsented(store: TransactionStore, connection_id: str, consent: ConsentSnapshot | None) -> list[str]:
    """Forget the accounts whose IBAN (or card) the consent's transactions list no longer names."""
    covered = {
        item.card if isinstance(item, CardReference) else item for item in (consent.transactions if consent else [])
    }
    keep = [account_id for account_id, identifier in store.accounts(connection_id).items() if identifier in covered]
    return purge_accounts_not_in(store, connection_id, keep)
