"""Helpers of the fault-injection suite (``test_faults.py``): the sandbox's switches, AWS failures injected at the
lowest level botocore offers, and the checks every scenario ends with (problem+json code, tokens still sealed and
still working, nothing in plaintext).

AWS failures moto cannot produce (throttling, KMS outages) are raised from ``BaseClient._make_api_call``, the one
call PynamoDB and boto3 both go through: the gateway sees exactly what botocore raises once its own retries are
spent. A condition that really fails (a concurrent writer) is produced by writing to moto before the call instead.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import requests
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from aisp import wiring
from aisp.models.connection import ConnectionStatus, TokenPair
from aisp.settings import load_settings
from aisp.stet import PsuContext
from tests.conftest import CONNECTIONS_TABLE
from tests.integration.journey import BANK, raw_strings
from tests.reliability.tally import record

SUITE = "faults"
PROBLEM = "application/problem+json"
# A user-attended call (PSU-IP-Address): the sandbox's daily quota of unattended calls never applies.
ATTENDED = PsuContext(ip_address="203.0.113.9")
FORMAT_V1 = 1  # aisp.aws.kms's blob format byte


class Bank:
    """The sandbox's admin API (fault switches, token revocation, expiry)."""

    def __init__(self, session: requests.Session, admin_url: str) -> None:
        self._session = session
        self._url = admin_url

    def call(self, method: str, name: str, body: dict[str, Any] | None = None) -> Any:
        response = self._session.request(method, f"{self._url}/{name}", json=body, timeout=5)
        assert response.status_code < 300, response.text  # noqa: PLR2004 - any 2xx
        return response.json() if response.content else None

    def fault(self, **rule: Any) -> None:
        self.call("POST", "faults", rule)

    def clear(self) -> None:
        self.call("DELETE", "faults")

    def faults(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "state")["faults"])


@contextmanager
def bank_timeout(monkeypatch: Any, seconds: float) -> Iterator[None]:
    """The gateway's read timeout (``BANK_TIMEOUT_SECONDS``) set to ``seconds``, then back to what it was."""
    with monkeypatch.context() as patched:
        patched.setenv("BANK_TIMEOUT_SECONDS", str(seconds))
        load_settings.cache_clear()
        wiring.bank_clients.reset()
        yield
    load_settings.cache_clear()
    wiring.bank_clients.reset()


# ----------------------------------------------------------------------------------------------------------------
# AWS failures below the gateway
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class AwsFault:
    """Which botocore calls fail, how, and how many did."""

    operations: frozenset[str]
    code: str
    times: int | None = None
    table: str | None = None
    when: Callable[[dict[str, Any]], bool] | None = None
    before: Callable[[str, dict[str, Any]], None] | None = None
    fired: int = 0
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def applies(self, operation: str, params: dict[str, Any]) -> bool:
        if operation not in self.operations:
            return False
        if self.table is not None and params.get("TableName") != self.table:
            return False
        return self.when is None or self.when(params)

    def take(self) -> bool:
        with self.lock:
            if self.times is not None and self.fired >= self.times:
                return False
            self.fired += 1
            return True


@contextmanager
def aws_fault(
    *operations: str,
    code: str,
    times: int | None = None,
    table: str | None = None,
    when: Callable[[dict[str, Any]], bool] | None = None,
    before: Callable[[str, dict[str, Any]], None] | None = None,
) -> Iterator[AwsFault]:
    """Make the named AWS operations fail with error ``code`` (``before``: run a side effect instead of failing)."""
    fault = AwsFault(frozenset(operations), code, times=times, table=table, when=when, before=before)
    original = BaseClient._make_api_call

    def patched(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if fault.applies(operation, params) and fault.take():
            fault.seen.append(operation)
            if fault.before is not None:
                fault.before(operation, params)
            else:
                raise ClientError(
                    {"Error": {"Code": fault.code, "Message": "injected by the reliability suite"}}, operation
                )
        return original(client, operation, params)

    with mock.patch.object(BaseClient, "_make_api_call", patched):
        yield fault


# ----------------------------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------------------------


def problem(response: dict[str, Any], status: int, code: str) -> dict[str, Any]:
    """The answer is the documented problem; an undocumented 500 is counted in the tally before failing."""
    if response["statusCode"] == 500 and status != 500:  # noqa: PLR2004
        record(SUITE, cases=0, server_errors=1)
    body = json.loads(response["body"])
    assert (response["statusCode"], body.get("code")) == (status, code), body
    assert response["headers"]["Content-Type"] == PROBLEM
    assert response["headers"]["Cache-Control"] == "no-store"
    return body


def assert_sealed(aws: Any, user: str, secrets: list[str], *, bank: str = BANK) -> dict[str, Any]:
    """The connection's raw item holds its tokens as one AES-GCM blob, and none of ``secrets`` in plaintext."""
    item = aws.raw_connection(user, bank)
    assert item, "the connection record is gone"
    if "tokens" in item:
        blob = item["tokens"]["B"]
        assert blob[0] == FORMAT_V1 and len(blob) > 64  # noqa: PLR2004 - header + wrapped key + nonce + tag
    everything = raw_strings(item)
    for secret in secrets:
        assert secret not in everything
    # Nor anywhere else in the table (another record, an attribute written by mistake)
    for other in aws.dynamodb.scan(TableName=CONNECTIONS_TABLE)["Items"]:
        strings = raw_strings(other)
        assert not any(secret in strings for secret in secrets)
    return item


def plain(tokens: TokenPair) -> list[str]:
    """The plaintext of a token pair (to look for in raw items)."""
    values = [tokens.access_token.get_secret_value()]
    if tokens.refresh_token is not None:
        values.append(tokens.refresh_token.get_secret_value())
    return values


def issued_tokens(sandbox: Any, psu: str, *, bank: str = BANK) -> list[str]:
    """Every live access and refresh token the sandbox issued to ``psu`` (read from the bank's own store)."""
    store = sandbox.core.stores[bank]
    with store.lock:
        tokens = {**store.access_tokens, **store.refresh_tokens}
        return [token for token, grant in tokens.items() if grant.psu_id == psu]


def works_at_the_bank(tokens: TokenPair, *, bank: str = BANK) -> bool:
    """The access token reads the PSU's accounts at the sandbox (signed, mTLS, attended)."""
    return bool(wiring.bank_clients().get(bank).get_accounts(tokens.access_token.get_secret_value(), ATTENDED).accounts)


def assert_intact(aws: Any, repository: Any, user: str, before: TokenPair, *, bank: str = BANK) -> TokenPair:
    """The record is still ACTIVE, sealed, lease-free, and holds ``before``'s refresh token (same or newer access)."""
    connection, tokens = repository.get_with_tokens(user, bank)
    assert connection.status is ConnectionStatus.ACTIVE
    assert tokens is not None and tokens.refresh_token == before.refresh_token
    item = assert_sealed(aws, user, [*plain(before), *plain(tokens)], bank=bank)
    assert "lease_owner" not in item and "lease_until" not in item
    return tokens
