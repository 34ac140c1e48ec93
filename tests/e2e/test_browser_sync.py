"""The quickstart page's Sync section in a real browser (Debian's Chromium, as ``test_browser.py``): Marc connects
and consents on the page, runs the scheduled sync, sees his transactions arrive in the live feed; the bank's clock
moves a day, the sync runs again, and the feed shows only that day's changes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import CHROMIUM
from tests.e2e.test_browser import log_in_at_bank, start_connecting
from tests.reliability.stack_helpers import local_stack

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} is missing: install Debian's chromium (`make browser`) to run the browser tests",
    ),
]
SYNC_WAIT_MS = 120_000  # a first sync writes every transaction of three accounts


@pytest.fixture(scope="module")
def stack(state_dir):
    with local_stack(state_dir, sandbox_admin=True) as running:
        yield running


def run_sync(page: Page) -> dict[str, Any]:
    """Click "Run the sync now"; the run summary the control answered."""
    with page.expect_response(re.compile(r"/_local/schedules/AccountSyncFunction$"), timeout=SYNC_WAIT_MS) as answer:
        page.get_by_role("button", name="Run the sync now").click()
    assert answer.value.status == 200, answer.value.text()
    summary: dict[str, Any] = answer.value.json()
    return summary


def test_the_sync_feed_shows_the_first_sync_then_only_the_days_changes(stack, page: Page, tmp_path):
    from playwright.sync_api import expect

    # Given Marc connected on the page and consented to every account
    start_connecting(stack, page, "marc")
    log_in_at_bank(stack, page, decision="Accepter", status="authorized")
    page.get_by_role("button", name="Give consent").click()
    expect(page.locator("#accounts-table")).to_contain_text("4321.95 EUR")

    # Then the Sync section polls the feed: nothing yet
    status = page.locator("#sync-status")
    expect(status).to_contain_text("Feed: 0 added, 0 modified, 0 removed so far; not synced yet.")
    expect(page.locator("#sync-table")).to_be_hidden()

    # When he runs the sync now
    first = run_sync(page)

    # Then the run synced his connection, and the feed shows every transaction added, with synced_at
    assert (first["synced"], first["modified"], first["removed"]) == (1, 0, 0)
    assert first["added"] > 0
    expect(page.locator("#sync-run-status")).to_contain_text(f"1 connection(s) synced; {first['added']} added")
    # (the feed shows each account's changes as the sync commits them, so a run may come in several batches)
    expect(status).to_contain_text(f"Feed: {first['added']} added, 0 modified, 0 removed so far; last synced ")
    expect(page.locator("#sync-last")).to_contain_text(" added, 0 modified, 0 removed")
    expect(page.locator('#sync-table tbody tr[data-change="added"]').first).to_be_visible()
    assert page.locator('#sync-table tbody tr[data-change="modified"]').count() == 0
    # And the sync's unattended reads show in today's quota
    expect(page.locator("#quota-table")).to_contain_text("transactions")

    # (batches are numbered; the table keeps the newest rows only)
    batches_before = page.locator("#sync-table tbody tr.sync-batch").first.get_attribute("data-batch")

    # When the bank's clock moves a day
    page.get_by_role("button", name="Move the bank's clock a day").click()
    expect(page.locator("#sync-clock-status")).to_contain_text("(1 day ahead); the gateway's stays")

    # And he runs the sync again
    second = run_sync(page)

    # Then the feed shows only that day's changes, in new batches on top
    assert second["synced"] == 1
    changed = second["added"] + second["modified"] + second["removed"]
    assert 0 < changed < first["added"]
    total = (first["added"] + second["added"], second["modified"], second["removed"])
    expect(status).to_contain_text(f"Feed: {total[0]} added, {total[1]} modified, {total[2]} removed so far")
    kinds = page.locator("#sync-table tbody tr[data-change]").evaluate_all(
        f"rows => rows.filter((r) => Number(r.dataset.batch) > {batches_before}).map((r) => r.dataset.change)"
    )
    assert sorted(kinds) == sorted(
        ["added"] * second["added"] + ["modified"] * second["modified"] + ["removed"] * second["removed"]
    )
    # And each is shown with its date, text, status and amount (a removal: what it was)
    newest = page.locator("#sync-table tbody tr[data-change]").first
    expect(newest.locator("td")).to_have_count(5)
    expect(page.locator("#sync-error")).to_be_hidden()
    page.locator("#sync-step").screenshot(path=str(tmp_path / "sync.png"))
