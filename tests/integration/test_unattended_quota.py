"""Unattended reads against the offline 89C3 sandbox's own quota, over real HTTPS with mTLS: the accounts handler
with the fintech backend's token, moto (the ledger in DynamoDB) and a gateway clock moved with the sandbox's.

The sandbox counts BPCE's way (no ``PSU-IP-Address``: 4 a day per client, PSU, account and method, pages free, per
Europe/Paris day) and answers 429 past it; the gateway must refuse the fifth itself, so the sandbox never says no.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from aisp import wiring
from tests.integration.journey import BANK, SharedClock, accounts, as_backend, at_path, connect_persona, event
from tests.sandbox.helpers import MARC_ACCOUNTS

pytestmark = pytest.mark.integration

ACCOUNT = MARC_ACCOUNTS[0]
BALANCES = f"/v1/connections/{BANK}/accounts/{ACCOUNT}/balances"
TRANSACTIONS = f"/v1/connections/{BANK}/accounts/{ACCOUNT}/transactions"


@dataclasses.dataclass
class Stack:
    clock: SharedClock
    admin: requests.Session
    admin_url: str
    sent: list[dict[str, str]]

    def move_to(self, moment: datetime) -> None:
        """Both clocks to ``moment`` (the sandbox's by its admin API)."""
        self.clock.advance(self.admin, self.admin_url, (moment - datetime.now(UTC)).total_seconds() - self.clock.offset)


@pytest.fixture
def stack(gateway, sandbox, admin, monkeypatch) -> Iterator[Stack]:
    """The gateway on a clock shared with the sandbox, every request it sends to the bank recorded (its headers)."""
    clock = SharedClock()
    wiring.connection_services.provide(dataclasses.replace(gateway, clock=clock))
    sent: list[dict[str, str]] = []
    original = requests.adapters.HTTPAdapter.send

    def recording(adapter: Any, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        if request.url and request.url.startswith(sandbox.api_origin) and "/stet/psd2/" in request.url:
            sent.append({"url": request.url, **{k.lower(): v for k, v in request.headers.items()}})
        return original(adapter, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", recording)
    yield Stack(clock=clock, admin=admin, admin_url=sandbox.admin_url, sent=sent)


def _balances(load_event, lambda_context, *, unattended: bool = True):
    loaded = at_path(event(load_event, "accounts/get_balances.json"), BALANCES, bank_code=BANK, account_id=ACCOUNT)
    return accounts(as_backend(loaded) if unattended else loaded, lambda_context)


def _transactions(load_event, lambda_context, **query: str):
    loaded = at_path(
        event(load_event, "accounts/get_transactions.json", **query), TRANSACTIONS, bank_code=BANK, account_id=ACCOUNT
    )
    return accounts(as_backend(loaded), lambda_context)


def _aisp_calls(stack: Stack, path: str) -> list[dict[str, str]]:
    return [sent for sent in stack.sent if sent["url"].split("?")[0].endswith(path)]


def test_the_fifth_unattended_read_is_refused_by_the_gateway_and_the_sandbox_saw_four(
    stack, load_event, lambda_context
):
    connect_persona(load_event, lambda_context)
    statuses = [_balances(load_event, lambda_context)[0]["statusCode"] for _ in range(5)]

    assert statuses == [200, 200, 200, 200, 429]
    response, body = _balances(load_event, lambda_context)
    assert (response["statusCode"], body["code"]) == (429, "quota_exhausted")
    calls = _aisp_calls(stack, f"/accounts/{ACCOUNT}/balances")
    assert len(calls) == 4  # the sandbox saw four; the fifth and sixth never left
    # Not one PSU-* header on an unattended call (the sandbox counted them: it counts only those without the IP)
    assert [name for call in calls for name in call if name.startswith("psu-")] == []

    # The user, present, is served as before: the sandbox does not count attended reads
    attended, _ = _balances(load_event, lambda_context, unattended=False)
    assert attended["statusCode"] == 200
    assert _aisp_calls(stack, f"/accounts/{ACCOUNT}/balances")[-1]["psu-ip-address"] == "203.0.113.10"


def test_following_pages_counts_once_like_the_sandbox(stack, load_event, lambda_context):
    connect_persona(load_event, lambda_context)
    everything, body = _transactions(load_event, lambda_context, all="true")
    assert everything["statusCode"] == 200, body
    pages = len(_aisp_calls(stack, f"/accounts/{ACCOUNT}/transactions"))
    assert pages > 1  # the listing spanned several bank pages

    recent = (datetime.now(UTC).date() - timedelta(days=30)).isoformat()
    later = [_transactions(load_event, lambda_context, date_from=recent)[0]["statusCode"] for _ in range(4)]

    assert later == [200, 200, 200, 429]  # the all=true listing was one of the four
    assert len(_aisp_calls(stack, f"/accounts/{ACCOUNT}/transactions")) == pages + 3
    assert everything["headers"]["RateLimit"].startswith('"unattended";r=3;')


def test_concurrent_unattended_reads_never_exceed_four(stack, load_event, lambda_context):
    from tests.fakes import serialize_dynamodb_writes

    connect_persona(load_event, lambda_context)
    _balances(load_event, lambda_context, unattended=False)  # warm: a token and the registry in place
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def read() -> None:
        start.wait()
        response, _ = _balances(load_event, lambda_context)
        with lock:
            statuses.append(response["statusCode"])

    with serialize_dynamodb_writes():  # moto's conditional writes made atomic per item, as DynamoDB's are
        threads = [threading.Thread(target=read) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

    assert sorted(statuses) == [200] * 4 + [429] * 4
    unattended = [call for call in _aisp_calls(stack, f"/accounts/{ACCOUNT}/balances") if "psu-ip-address" not in call]
    assert len(unattended) == 4


# The two DST days of 2027 in Paris and a plain winter day: (an instant early in the day, its Paris midnight, UTC).
DAYS = [
    pytest.param(datetime(2027, 3, 27, 23, 30, tzinfo=UTC), datetime(2027, 3, 28, 22, 0, tzinfo=UTC), id="spring-23h"),
    pytest.param(
        datetime(2027, 10, 30, 22, 30, tzinfo=UTC), datetime(2027, 10, 31, 23, 0, tzinfo=UTC), id="autumn-25h"
    ),
    pytest.param(datetime(2027, 1, 14, 23, 30, tzinfo=UTC), datetime(2027, 1, 15, 23, 0, tzinfo=UTC), id="winter"),
]


@pytest.mark.parametrize(("early", "midnight"), DAYS)
def test_the_counter_resets_at_paris_midnight_on_the_sandbox_clock(stack, load_event, lambda_context, early, midnight):
    stack.move_to(early)
    connect_persona(load_event, lambda_context)
    for _ in range(4):
        assert _balances(load_event, lambda_context)[0]["statusCode"] == 200

    # Two minutes before the Paris midnight that ends this (23, 24 or 25 hour) day: still the same day
    stack.move_to(midnight - timedelta(minutes=2))
    response, body = _balances(load_event, lambda_context)
    assert (response["statusCode"], body["code"]) == (429, "quota_exhausted")
    assert datetime.fromisoformat(body["retry_at"]) == midnight
    assert 0 < int(response["headers"]["Retry-After"]) <= 120

    # Past it, both the gateway and the sandbox count a new day
    stack.move_to(midnight + timedelta(minutes=1))
    response, body = _balances(load_event, lambda_context)
    assert response["statusCode"] == 200, body
    assert response["headers"]["RateLimit"].startswith('"unattended";r=3;')
    assert len(_aisp_calls(stack, f"/accounts/{ACCOUNT}/balances")) == 5
