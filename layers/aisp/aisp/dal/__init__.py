"""Data access: PynamoDB models (``tables``) and repositories returning pydantic domain models.

Repositories are built by ``aisp.wiring`` on first use (no import-time I/O or env reads).
"""

from __future__ import annotations

from aisp.dal.connections import REFRESH_SHARDS, DynamoConnectionRepository, refresh_shard
from aisp.dal.quota import DynamoQuotaLedger
from aisp.dal.states import DynamoOAuthStateRepository, hash_state

__all__ = [
    "REFRESH_SHARDS",
    "DynamoConnectionRepository",
    "DynamoOAuthStateRepository",
    "DynamoQuotaLedger",
    "hash_state",
    "refresh_shard",
]
