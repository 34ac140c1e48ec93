"""aisp.idempotency's sealing of stored answers: opened only with the Idempotency-Key, by the user, for the operation
it was stored for (the keyed routes themselves: test_connect_handler.py, test_consents_*.py)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from aisp import errors
from aisp.idempotency import _open, _seal


class Call(BaseModel):
    user_id: str
    idempotency_key: str


MARC = Call(user_id="user-marc", idempotency_key="2c5e6f0a-0d5b-4bb1-9a43-2f1f3c7d8e90")
ANSWER = b'{"authorization_url": "https://bank.example/authorize?state=s3cr3t"}'


def test_a_sealed_answer_opens_with_its_key_and_holds_nothing_readable():
    # When an answer is sealed for Marc's key
    blob = _seal(ANSWER, call=MARC, scope="create")

    # Then the stored text reveals nothing of it, and it opens with the same key, user and operation
    assert b"s3cr3t" not in blob.encode() and "authorization_url" not in blob
    assert _open(blob, call=MARC, scope="create") == ANSWER


@pytest.mark.parametrize(
    ("call", "scope"),
    [
        (Call(user_id="user-eve", idempotency_key=MARC.idempotency_key), "create"),
        (Call(user_id="user-marc", idempotency_key="another-key"), "create"),
        (MARC, "consent"),
    ],
    ids=["another user", "another key", "another operation"],
)
def test_a_sealed_answer_does_not_open_for_anything_else(call, scope):
    blob = _seal(ANSWER, call=MARC, scope="create")

    with pytest.raises(errors.PersistenceError):
        _open(blob, call=call, scope=scope)
