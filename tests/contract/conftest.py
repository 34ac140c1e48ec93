"""One suite, two implementations: every test here runs against the in-memory repositories (``tests/memory.py``)
and against the DynamoDB ones on moto, so the fakes the logic tests use cannot drift from what production does.

``backend`` is parametrized; only its ``dynamodb`` param pulls in the ``aws`` fixture (moto), and carries the
``dynamodb`` marker: ``pytest tests/contract -m "not dynamodb"`` runs the memory half without importing moto.
Tests open no sockets (moto runs in-process).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pytest_socket import disable_socket

DYNAMODB = "dynamodb"
MEMORY = "memory"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.path.is_relative_to(item.config.rootpath / "tests" / "contract"):
        disable_socket(allow_unix_socket=True)


class FaultyCipher:
    """The backend's token cipher, which raises ``failure`` instead while it is set (KMS down, throttled...)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failure: Exception | None = None

    def encrypt(self, plaintext: bytes, *, binding: Any) -> bytes:
        if self.failure is not None:
            raise self.failure
        return bytes(self.inner.encrypt(plaintext, binding=binding))

    def decrypt(self, blob: bytes, *, binding: Any) -> bytes:
        if self.failure is not None:
            raise self.failure
        return bytes(self.inner.decrypt(blob, binding=binding))


@dataclass
class Backend:
    """The repositories under test and what a test needs to look beneath them."""

    name: str
    connections: Any
    states: Any
    cipher: FaultyCipher
    raw_connection: Callable[[str, str], dict[str, Any]]
    set_raw_attribute: Callable[[str, str, str, dict[str, Any]], None]
    serialized: Callable[[], contextlib.AbstractContextManager[Any]]
    """Concurrent writers see per-item atomic writes (moto needs help; the memory repositories are locked)."""


def _dynamodb(request: pytest.FixtureRequest) -> Backend:
    from aisp import wiring
    from aisp.dal import DynamoConnectionRepository, DynamoOAuthStateRepository
    from tests.conftest import CONNECTIONS_TABLE
    from tests.fakes import serialize_dynamodb_writes

    aws = request.getfixturevalue("aws")
    cipher = FaultyCipher(wiring.token_cipher())  # the KMS envelope cipher on moto's KMS, as deployed

    def set_raw_attribute(user_id: str, bank_code: str, name: str, value: dict[str, Any]) -> None:
        aws.dynamodb.update_item(
            TableName=CONNECTIONS_TABLE,
            Key={"user_id": {"S": user_id}, "bank_code": {"S": bank_code}},
            UpdateExpression="SET #a = :v",
            ExpressionAttributeNames={"#a": name},
            ExpressionAttributeValues={":v": value},
        )

    return Backend(
        name=DYNAMODB,
        connections=DynamoConnectionRepository(cipher=lambda: cipher),
        states=DynamoOAuthStateRepository(),
        cipher=cipher,
        raw_connection=aws.raw_connection,
        set_raw_attribute=set_raw_attribute,
        serialized=serialize_dynamodb_writes,
    )


def _memory() -> Backend:
    from tests.fakes import local_token_cipher
    from tests.memory import MemoryConnectionRepository, MemoryOAuthStateRepository

    cipher = FaultyCipher(local_token_cipher())
    connections = MemoryConnectionRepository(cipher)
    return Backend(
        name=MEMORY,
        connections=connections,
        states=MemoryOAuthStateRepository(),
        cipher=cipher,
        raw_connection=connections.raw_connection,
        set_raw_attribute=connections.set_raw_attribute,
        serialized=contextlib.nullcontext,
    )


@pytest.fixture(params=[MEMORY, pytest.param(DYNAMODB, marks=pytest.mark.dynamodb)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    yield _dynamodb(request) if request.param == DYNAMODB else _memory()


@pytest.fixture
def repo(backend: Backend) -> Any:
    """The connections repository (``ConnectionRepository`` + ``RefreshRepository``)."""
    return backend.connections


@pytest.fixture
def states(backend: Backend) -> Any:
    """The OAuth states repository."""
    return backend.states
