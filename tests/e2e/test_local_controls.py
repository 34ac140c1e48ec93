"""The local stack's controls over real HTTP: ``POST /_local/schedules/{FunctionLogicalId}`` runs a schedule now,
``POST /_local/sandbox/clock`` moves the sandbox's clock; loopback callers and the page's own origin only.

One stack for the module (the sandbox's admin API on): Marc connects and consents, the sync runs, the bank's clock
moves a day, the sync runs again and the feed gives only what changed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
import requests

from local.events import IncomingRequest
from tests.reliability.stack_helpers import MARC_IBANS, connect, consent_to_everything, local_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SYNC = "AccountSyncFunction"
REFRESHER = "TokenRefresherFunction"
DAY = 86_400
TIMEOUT = 120


@pytest.fixture(scope="module")
def stack(state_dir):
    with local_stack(state_dir, sandbox_admin=True) as running:
        yield running


def post(stack, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        return session.post(stack.api_url + path, json=body, timeout=TIMEOUT, **kwargs)


def message(response: requests.Response) -> str:
    assert response.headers["content-type"] == "application/json", response.headers
    text: str = response.json()["message"]
    return text


def feed(app, cursor: str | None = None) -> dict[str, list[dict[str, Any]] | str | None]:
    """Every change from ``cursor`` (all pages), and the last ``next_cursor``."""
    changes: dict[str, Any] = {"added": [], "modified": [], "removed": []}
    while True:
        params = {"count": 500, **({"cursor": cursor} if cursor else {})}
        page = app.call("GET", "/v1/connections/13807/transactions/sync", params=params)
        for kind in ("added", "modified", "removed"):
            changes[kind] += page[kind]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            changes["next_cursor"], changes["synced_at"] = cursor, page["synced_at"]
            return changes


def test_the_sync_runs_now_and_again_after_the_banks_clock_moves_a_day(stack):
    # Given Marc connected and consented to his three accounts, never synced
    connected = connect(stack, "marc")
    consent_to_everything(connected.app, "13807", MARC_IBANS)
    assert feed(connected.app)["added"] == []

    # Then the schedule alone finds nothing due: the connection's first slot, set when it was completed, is to come
    waiting = post(stack, f"/_local/schedules/{SYNC}")
    assert waiting.status_code == 200, waiting.text
    assert (waiting.json()["seen"], waiting.json()["synced"]) == (0, 0)

    # When the sync's schedule runs now, with due_now
    first = post(stack, f"/_local/schedules/{SYNC}", {"due_now": True})

    # Then the answer is the function's run summary: his connection synced, every transaction added
    assert first.status_code == 200, first.text
    summary = first.json()
    assert (summary["seen"], summary["synced"], summary["failed"]) == (1, 1, 0)
    assert summary["added"] > 0
    assert (summary["modified"], summary["removed"]) == (0, 0)
    # And the feed gives exactly those, each once
    initial = feed(connected.app)
    added_ids = [tx["transaction_id"] for tx in initial["added"]]
    assert len(added_ids) == summary["added"] == len(set(added_ids))
    assert initial["synced_at"] is not None

    # When the bank's clock moves a day
    moved = post(stack, "/_local/sandbox/clock", {"advance_seconds": DAY})

    # Then the sandbox says its new time, a day ahead of the gateway's, which stays real time
    assert moved.status_code == 200, moved.text
    clock = moved.json()
    assert clock["clock_offset_seconds"] == DAY
    ahead = datetime.fromisoformat(clock["now"]) - datetime.fromisoformat(clock["gateway_now"])
    assert abs(ahead.total_seconds() - DAY) < 60  # noqa: PLR2004 - the two reads are moments apart

    # When the schedule runs again as Scheduler would, the connection's next slot (gateway time) has not come
    assert post(stack, f"/_local/schedules/{SYNC}").json()["seen"] == 0

    # When it runs with due_now (every connection due now)
    again = post(stack, f"/_local/schedules/{SYNC}", {"due_now": True})

    # Then it syncs, and the feed from the saved cursor gives only the day's changes
    assert again.status_code == 200, again.text
    second = again.json()
    assert second["synced"] == 1
    changes = feed(connected.app, initial["next_cursor"])  # type: ignore[arg-type]
    assert len(changes["added"]) == second["added"] > 0
    assert len(changes["modified"]) == second["modified"]
    assert len(changes["removed"]) == second["removed"]
    new_ids = {tx["transaction_id"] for tx in changes["added"]}
    assert not new_ids & set(added_ids), "a transaction added twice"
    for tx in changes["modified"]:
        assert tx["transaction_id"] in added_ids


def test_the_refresher_runs_now_too(stack):
    answer = post(stack, f"/_local/schedules/{REFRESHER}")

    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert isinstance(answer.json(), dict)
    assert answer.json() != {}


@pytest.mark.parametrize(
    ("function", "says"),
    [
        ("AccountsFunction", "AccountsFunction has no schedule: the scheduled functions are AccountSyncFunction, "),
        ("NoSuchFunction", "NoSuchFunction is not a function of the template: the scheduled functions are "),
    ],
)
def test_a_function_without_a_schedule_is_404_saying_which_have_one(stack, function, says):
    answer = post(stack, f"/_local/schedules/{function}")

    assert answer.status_code == 404
    assert message(answer).startswith(says)
    assert REFRESHER in message(answer)


@pytest.mark.parametrize(
    ("function", "body", "says"),
    [
        (SYNC, "not json", "the body is not JSON: send a JSON object"),
        (SYNC, "[1]", "the body must be a JSON object"),
        (SYNC, '{"due_now": "yes"}', "due_now must be true or false"),
        (SYNC, '{"due": true}', "unknown field due: the only option is due_now (true or false)"),
        (REFRESHER, '{"due_now": true}', "due_now is for AccountSyncFunction only"),
    ],
)
def test_bad_schedule_options_are_400(stack, function, body, says):
    answer = post(stack, f"/_local/schedules/{function}", data=body, headers={"content-type": "application/json"})

    assert answer.status_code == 400
    assert message(answer) == says


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("", "send a JSON object body"),
        ("{}", 'advance_seconds is missing: send {"advance_seconds": 86400} to move a day'),
        ('{"advance_seconds": "86400"}', "advance_seconds must be a number of seconds"),
        ('{"advance_seconds": true}', "advance_seconds must be a number of seconds"),
        ('{"advance_seconds": NaN}', "advance_seconds must be a number of seconds"),
        ('{"advance_seconds": 34560001}', "advance_seconds must be within ±34560000 (the sandbox's limit: 400 days)"),
        ('{"advance_seconds": 60, "bank": "13807"}', 'unknown field bank: send {"advance_seconds": N}'),
    ],
)
def test_a_bad_clock_move_is_400_and_moves_nothing(stack, body, says):
    before = stack.sandbox.core.clock.offset

    answer = post(stack, "/_local/sandbox/clock", data=body, headers={"content-type": "application/json"})

    assert answer.status_code == 400
    assert message(answer) == says
    assert stack.sandbox.core.clock.offset == before


def test_the_clock_says_so_when_the_sandboxs_admin_api_is_off(stack):
    core = stack.sandbox.core
    core.admin_enabled = False
    try:
        answer = post(stack, "/_local/sandbox/clock", {"advance_seconds": 60})
    finally:
        core.admin_enabled = True

    assert answer.status_code == 409
    assert "start the stack with --sandbox-admin" in message(answer)


def test_a_get_is_405(stack):
    with requests.get(f"{stack.api_url}/_local/sandbox/clock", timeout=TIMEOUT) as answer:
        assert answer.status_code == 405
        assert answer.headers["allow"] == "POST"


def request(stack, path: str, *, source_ip: str = "127.0.0.1", headers: dict[str, str] | None = None):
    port = stack.ports["api"]
    return IncomingRequest(
        method="POST",
        raw_path=path,
        raw_query="",
        headers=tuple({"host": f"127.0.0.1:{port}", **(headers or {})}.items()),
        body=json.dumps({"advance_seconds": DAY}).encode(),
        source_ip=source_ip,
        protocol="HTTP/1.1",
        server_port=port,
    )


@pytest.mark.parametrize("path", ["/_local/sandbox/clock", f"/_local/schedules/{SYNC}"])
@pytest.mark.parametrize("source_ip", ["192.0.2.10", "::ffff:192.0.2.10", "2001:db8::1", "not-an-address"])
def test_a_caller_off_loopback_is_refused_and_nothing_runs(stack, path, source_ip):
    # (Through the adapter itself: its listener binds loopback only, so no such caller reaches it over TCP.)
    before = stack.sandbox.core.clock.offset

    answer = stack.api.handle(request(stack, path, source_ip=source_ip))

    assert answer.status == 403
    assert json.loads(answer.body) == {"message": "the local controls answer loopback callers only"}
    assert stack.sandbox.core.clock.offset == before


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        # DNS rebinding: a foreign name resolved to 127.0.0.1; the browser sends that name as Host and Origin
        {"origin": "http://rebound.example:3000", "host": "rebound.example:3000"},
    ],
)
def test_a_browser_on_another_origin_is_refused(stack, headers):
    before = stack.sandbox.core.clock.offset

    with requests.post(
        f"{stack.api_url}/_local/sandbox/clock", json={"advance_seconds": DAY}, headers=headers, timeout=TIMEOUT
    ) as answer:
        assert answer.status_code == 403
        assert answer.json() == {"message": "the local controls answer the quickstart page's own origin only"}
    assert stack.sandbox.core.clock.offset == before


def test_the_page_on_its_own_origin_may_move_the_clock(stack):
    port = stack.ports["api"]
    before = stack.sandbox.core.clock.offset

    with requests.post(
        f"http://localhost:{port}/_local/sandbox/clock",
        json={"advance_seconds": 60},
        headers={"origin": f"http://localhost:{port}"},
        timeout=TIMEOUT,
    ) as answer:
        assert answer.status_code == 200, answer.text
    assert stack.sandbox.core.clock.offset == before + 60
