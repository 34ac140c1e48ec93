"""A fix to moto's DynamoDB for the local stack: ``TransactWriteItems`` backs a table up once, not once per item.

moto 5 copies the whole table (``copy.deepcopy``) for every item of a transaction before writing, to roll back on a
failed condition. The sync writes its changes 50 at a time, two items each, into one table: 100 copies of a table
of thousands of sealed transactions per call, seconds each on a busy machine, minutes for one first sync. Here the
copies of one table within one call are the same copy: nothing is written before the last one is taken, so the
rollback sees exactly what it saw before. Everything else is moto's own code.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

_scope = threading.local()
_installed = threading.Lock()


class _CopyTablesOnce:
    """Stands for the ``copy`` module inside ``moto.dynamodb.models``: a table is copied once per transaction."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        from moto.dynamodb.models.table import Table  # noqa: PLC0415 - moto is imported by the caller already

        copies: dict[int, Any] | None = getattr(_scope, "tables", None)
        if copies is None or not isinstance(value, Table):
            return copy.deepcopy(value, memo)
        if id(value) not in copies:
            copies[id(value)] = copy.deepcopy(value, memo)
        return copies[id(value)]


def install() -> None:
    """Patch moto's DynamoDB backend once per process (idempotent)."""
    from moto.dynamodb import models  # noqa: PLC0415 - only when a local moto server starts

    with _installed:
        backend = models.DynamoDBBackend
        if getattr(backend.transact_write_items, "_copies_tables_once", False):
            return
        original = backend.transact_write_items

        def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
            _scope.tables = {}
            try:
                original(self, transact_items)
            finally:
                _scope.tables = None

        transact_write_items._copies_tables_once = True  # type: ignore[attr-defined]
        backend.transact_write_items = transact_write_items  # type: ignore[method-assign]
        models.copy = _CopyTablesOnce()  # type: ignore[attr-defined,assignment]
