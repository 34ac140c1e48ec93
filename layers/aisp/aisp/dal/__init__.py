"""Data access: PynamoDB models (``tables``) and repositories returning pydantic domain models.

Repositories are built by the cached factories below, on first use (no import-time I/O or env reads).
"""

from __future__ import annotations

from functools import cache

from aisp.dal.connections import REFRESH_SHARDS, DynamoConnectionRepository, refresh_shard
from aisp.dal.states import DynamoOAuthStateRepository, hash_state

__all__ = [
    "REFRESH_SHARDS",
    "DynamoConnectionRepository",
    "DynamoOAuthStateRepository",
    "get_connection_repository",
    "get_state_repository",
    "hash_state",
    "refresh_shard",
]


@cache
def get_connection_repository() -> DynamoConnectionRepository:
    """The container's connections repository (its KMS cipher is built on the first token read or write)."""
    return DynamoConnectionRepository()


@cache
def get_state_repository() -> DynamoOAuthStateRepository:
    """The container's OAuth state repository."""
    return DynamoOAuthStateRepository()
