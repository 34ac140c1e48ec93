"""The per-container memory of read connections (aisp.logic.remembered): keyed by user and bank, bounded in age and
in size, dropped on demand."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from pydantic import SecretStr

from aisp.logic.remembered import RememberedConnections
from aisp.models.connection import Connection, ConnectionStatus, TokenPair

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _connection(user_id: str, bank_code: str = "13807") -> Connection:
    return Connection(
        connection_id=f"cn_{user_id}",
        user_id=user_id,
        bank_code=bank_code,
        status=ConnectionStatus.ACTIVE,
        created_at=NOW,
        updated_at=NOW,
        has_tokens=True,
        version=1,
    )


def _tokens(access: str) -> TokenPair:
    return TokenPair(access_token=SecretStr(access), refresh_token=SecretStr(f"r-{access}"))


def test_an_entry_is_found_only_under_its_own_user_and_bank():
    memory = RememberedConnections()
    memory.remember(_connection("alice"), _tokens("a1"))

    assert memory.recall("alice", "13807") == (_connection("alice"), _tokens("a1"))
    assert memory.recall("bob", "13807") is None
    assert memory.recall("alice", "10207") is None


def test_a_newer_read_replaces_the_entry_and_forget_drops_it():
    memory = RememberedConnections()
    memory.remember(_connection("alice"), _tokens("a1"))
    memory.remember(_connection("alice"), _tokens("a2"))
    assert memory.recall("alice", "13807") == (_connection("alice"), _tokens("a2"))
    assert len(memory) == 1

    memory.forget("alice", "13807")
    assert memory.recall("alice", "13807") is None


def test_an_entry_older_than_the_max_age_is_dropped():
    ticks = Ticks()
    memory = RememberedConnections(max_age_seconds=600, monotonic=ticks)
    memory.remember(_connection("alice"), _tokens("a1"))

    ticks.now += 600
    assert memory.recall("alice", "13807") is not None
    ticks.now += 1
    assert memory.recall("alice", "13807") is None
    assert len(memory) == 0


def test_the_least_recently_read_entries_go_first_beyond_the_max():
    memory = RememberedConnections(max_entries=2)
    memory.remember(_connection("alice"), _tokens("a"))
    memory.remember(_connection("bob"), _tokens("b"))
    memory.remember(_connection("alice"), _tokens("a2"))  # read again: now the newest
    memory.remember(_connection("carol"), _tokens("c"))

    assert memory.recall("bob", "13807") is None
    assert memory.recall("alice", "13807") is not None and memory.recall("carol", "13807") is not None


def test_reads_run_on_worker_threads():
    memory = RememberedConnections()

    assert memory.submit(lambda: threading.current_thread().name).result(timeout=5).startswith("connection-read")
