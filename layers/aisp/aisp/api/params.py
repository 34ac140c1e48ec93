"""Request parameters several HTTP functions declare (Powertools ``Annotated`` parameters, validated by the resolver).

An optional query or header parameter is typed ``X | None`` with the :class:`NotNullable` marker: absent means
``None`` to the handler, while the document says ``X`` alone (a client leaves the parameter out; it cannot send
``null`` in a query string or a header, and a generated client must not offer to).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from aws_lambda_powertools.event_handler.openapi.params import Header, Path
from pydantic import GetJsonSchemaHandler
from pydantic_core import CoreSchema

__all__ = ["CANONICAL_HEADERS", "IDEMPOTENCY_KEY", "BankCodePath", "IdempotencyKeyHeader", "NotNullable"]

IDEMPOTENCY_KEY: Final = "Idempotency-Key"
# Powertools lower-cases header names (HTTP/2 spells them so); the document spells them as clients write them.
CANONICAL_HEADERS: Final = (IDEMPOTENCY_KEY,)


class NotNullable:
    """``Annotated`` marker of an optional parameter: its schema is the non-null branch of ``X | None`` only.

    Validation is untouched (constraints and error locations stay those of ``X | None``).
    """

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        schema: dict[str, Any] = handler(core_schema)
        branches = [branch for branch in schema.pop("anyOf", []) if branch.get("type") != "null"]
        if len(branches) == 1:
            schema.update(branches[0])
        elif branches:
            schema["anyOf"] = branches
        return schema


BankCodePath = Annotated[
    str, Path(pattern=r"^[0-9]{5}$", description="Establishment code (cdetab)", examples=["13807"])
]
IdempotencyKeyHeader = Annotated[
    str | None,
    NotNullable,
    Header(
        alias=IDEMPOTENCY_KEY,
        min_length=1,
        max_length=255,
        pattern=r"^[!-~]+$",
        description="Any unique value per operation (a UUID v4): a retry with the same key and body replays the "
        "first answer for 24 h; the same key with another body is 422 idempotency_key_reused",
        examples=["5f0c6f3e-8a9d-4d7b-b1a2-0e6d6c1f9a10"],
    ),
]
