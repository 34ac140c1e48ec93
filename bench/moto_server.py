"""moto's server without the whole-table copy its DynamoDB makes for every item of a TransactWriteItems.

moto 5 backs up a transaction's table with ``copy.deepcopy`` once per item it writes, to roll back a failed
transaction: a 100-item transaction into a table of 20,000 items copies 2 million items, so a sync of 10,000
transactions (200 such transactions) would run for hours and measure moto. This server keeps the table as it is
instead; a failed transaction is then not rolled back. ``bench.sync`` uses it (its transactions have no
condition to fail); every other benchmark runs moto as shipped.

Usage: python -m bench.moto_server -H 127.0.0.1 -p PORT (``moto.server``'s arguments)
"""

from __future__ import annotations

import copy
import sys
from types import SimpleNamespace
from typing import Any

from moto import server
from moto.dynamodb import models
from moto.dynamodb.models.table import Table


def _deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """``copy.deepcopy``, except a whole table (the rollback copy), which is kept as it is."""
    return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def main() -> None:
    models.copy = SimpleNamespace(deepcopy=_deepcopy, copy=copy.copy)  # type: ignore[assignment,attr-defined]
    server.main(sys.argv[1:])


if __name__ == "__main__":
    main()
