"""The quickstart page in a real browser: Playwright driving Debian's Chromium (``/usr/bin/chromium``, headless)
through the whole journey, Marc's login at the sandbox's screens included, to his balance on the page.

Playwright's own browser download is never used. Without ``/usr/bin/chromium`` (``make browser`` installs it when
it can) the test is skipped, and the skip says why.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest

from local.jwt import b64url_decode
from local.stack import start_stack
from tests.e2e.conftest import CHROMIUM
from tests.reliability.stack_helpers import MARC_IBANS, connect, consent_to_everything

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} is missing: install Debian's chromium (`make browser`) to run the browser tests",
    ),
]
MARC = "D0999990I0"  # the sandbox's documented persona (sandbox/README.md)
OTP = "12345678"


@pytest.fixture(scope="module")
def stack(state_dir):
    with start_stack(api_port=0, moto_port=0, sandbox_port=0, sandbox_screens_port=0, state_dir=state_dir) as running:
        yield running


def page_origin(stack) -> str:
    """The page is opened as ``http://localhost:<port>``: another origin than the API (``127.0.0.1``), which it
    calls through CORS, as a fintech's web frontend on its own domain does."""
    return stack.api_url.replace("127.0.0.1", "localhost")


def start_connecting(stack, page: Page, user: str) -> None:
    """The page, a token for ``user``, B.P Grand Ouest picked, Connect: the browser ends at the bank's screens."""
    from playwright.sync_api import expect

    page.goto(f"{page_origin(stack)}/")
    page.fill("#user-id", user)
    page.get_by_role("button", name="Get a token").click()
    expect(page.locator("#token-status")).to_contain_text(f"Signed in as {user}")
    page.get_by_label("Pick B.P Grand Ouest").check()
    page.locator("#connect-button").click()
    page.wait_for_url(re.compile(re.escape(stack.sandbox.screens_origin) + r"/13807/"))


def log_in_at_bank(stack, page: Page, *, decision: str, status: str) -> None:
    """Marc at the sandbox's screens: identifier, one-time code, then the decision button, after which the callback
    sends the browser back to the page with ``?status=<status>&...``.

    The page reads that query string and removes it (``history.replaceState``) as soon as it loads, so the URL is
    only transient: the navigation is awaited from before the click, never looked for afterwards, when a busy
    machine may already have cleaned it up.
    """
    page.fill("#identifier", MARC)
    page.get_by_role("button", name="Valider").click()
    page.fill("#otp", OTP)
    page.get_by_role("button", name="Valider").click()
    back_at_the_page = re.compile(re.escape(page_origin(stack)) + rf"/\?status={status}&")
    with page.expect_navigation(url=back_at_the_page):
        page.get_by_role("button", name=decision).click()


def test_marc_connects_in_the_browser_and_sees_his_balance(stack, page, tmp_path):
    from playwright.sync_api import expect

    # Given the quickstart page on its own origin, a token for user marc, and B.P Grand Ouest picked
    api_calls: list[str] = []
    page.on("request", lambda request: api_calls.append(request.url) if "/v1/" in request.url else None)
    # When he connects, the browser goes to the bank's login screens
    start_connecting(stack, page, "marc")

    # And he logs in there as the sandbox persona and accepts
    # Then the callback brings him back to the page (?status=authorized&...&completion=...), which completes the
    # connection as him, connected, with the query string cleaned up
    log_in_at_bank(stack, page, decision="Accepter", status="authorized")
    expect(page.locator("#connect-result")).to_contain_text("Connected to B.P Grand Ouest (13807)")
    expect(page.locator("#connect-error")).to_be_hidden()
    expect(page.locator("#connections-table .badge")).to_have_text("active")
    assert page.evaluate("window.location.search") == ""

    # When he consents to every account (all boxes checked by default)
    expect(page.locator("#consent-table")).to_contain_text("FR7613807008043001965405158")
    page.get_by_role("button", name="Give consent").click()

    # Then his accounts show their balances, the seed's 4321.95 EUR first
    expect(page.locator("#accounts-table")).to_contain_text("4321.95 EUR")
    expect(page.get_by_text("4321.95 EUR")).to_be_visible()
    expect(page.locator("#accounts-identity")).to_contain_text("MALLOW MARC")
    expect(page.locator("#connections-table")).to_contain_text("balances 3 · transactions 3")

    # And his transactions come a page at a time, "More" following next_cursor
    page.get_by_role("row", name=re.compile("Compte perso")).get_by_role("button", name="Transactions").click()
    expect(page.locator("#transactions-count")).to_contain_text("100 transactions of FR7613807008043001965405158")
    page.get_by_role("button", name="More").click()
    expect(page.locator("#transactions-count")).to_contain_text("200 transactions")
    assert page.locator("#transactions-table tbody tr").count() == 200

    # And every API call went cross-origin, to 127.0.0.1, allowed by the API's CORS configuration
    assert api_calls and all(url.startswith(f"{stack.api_url}/v1/") for url in api_calls)
    assert page.evaluate("window.location.origin") == page_origin(stack)

    # And nothing went wrong on the way (every error box hidden)
    for box in ("user", "banks", "connect", "connections", "consent", "accounts", "transactions"):
        expect(page.locator(f"#{box}-error")).to_be_hidden()
    page.locator("#accounts-step").scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "quickstart.png"), full_page=True)


def test_a_refusal_at_the_bank_is_shown_as_an_error(stack, page, tmp_path):
    from playwright.sync_api import expect

    # Given a user at the bank's screens
    start_connecting(stack, page, "refusing-user")

    # When he refuses access
    # Then the callback brings him back to the page (?status=error&...), which says the connection failed, with the
    # callback's code and what it means
    log_in_at_bank(stack, page, decision="Refuser", status="error")
    error = page.locator("#connect-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("The connection failed")
    expect(error).to_contain_text("access_denied")
    expect(error).to_contain_text("You refused at the bank")
    expect(page.locator("#connect-result")).to_be_hidden()
    # And the connection is FAILED, explained in one sentence, with a way to try again
    row = page.locator("#connections-table tbody tr")
    expect(row.locator(".badge")).to_have_text("failed")
    expect(row).to_contain_text("you refused at the bank")
    expect(row.get_by_role("button", name="Reconnect")).to_be_visible()
    page.locator("#connect-step").screenshot(path=str(tmp_path / "refused.png"))

    # When he clicks Delete, the page asks first: declined, nothing happens; accepted, the connection is deleted
    page.once("dialog", lambda dialog: dialog.dismiss())
    row.get_by_role("button", name="Delete").click()
    expect(row.locator(".badge")).to_have_text("failed")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    expect(row.locator(".badge")).to_have_text("revoked")


def test_a_page_on_another_origin_does_not_play_the_backend(stack, page):
    from playwright.sync_api import expect

    # When the page is opened as localhost (another origin than the API, as a fintech's web frontend)
    page.goto(f"{page_origin(stack)}/")

    # Then it cannot switch to the backend, and says why and where it can
    expect(page.get_by_label("the fintech's backend")).to_be_disabled()
    expect(page.get_by_label("the user's app")).to_be_checked()
    expect(page.locator("#caller")).to_contain_text("does not let a page on another origin send Aisp-User")
    expect(page.locator("#caller a")).to_have_attribute("href", f"{stack.api_url}/")


def test_the_backend_reads_within_the_daily_quota_and_sees_it_spent(stack, page, tmp_path):
    from playwright.sync_api import expect

    # Given a user connected to 13807 as Marc, consented to everything (over HTTP: the page's journey is tested above)
    user = "quota-user"
    consent_to_everything(connect(stack, user).app, "13807", MARC_IBANS)

    # When the page is opened on the API's own origin, signed in as the user, and switched to the backend
    backend_calls: list[dict[str, str]] = []
    page.on("request", lambda request: backend_calls.append(request.headers) if "/balances" in request.url else None)
    page.goto(f"{stack.api_url}/")
    page.fill("#user-id", user)
    page.get_by_role("button", name="Get a token").click()
    expect(page.locator("#connections-table .badge")).to_have_text("active")
    page.get_by_label("the fintech's backend").check()
    expect(page.locator("#caller-status")).to_contain_text('server token (sub "backend", scope aisp/unattended)')
    expect(page.locator("#caller-status")).to_contain_text(f'Aisp-User: "{user}"')

    # Then what only the user may do is disabled, saying why
    expect(page.locator("#connect-note")).to_contain_text("Connecting is the user's own")
    delete = page.locator("#connections-table").get_by_role("button", name="Delete")
    expect(delete).to_be_disabled()
    assert "403 user_token_required" in delete.get_attribute("title")

    # When the backend opens the connection: the accounts and each balance are read once, without the user
    page.locator("#connections-table").get_by_role("button", name="Open").click()
    expect(page.locator("#consent-note")).to_be_visible()
    expect(page.locator("#consent-submit")).to_be_disabled()
    row = page.locator("#accounts-table tbody tr", has_text="FR7613807008043001965405158")
    left = row.locator(".quota-left")
    expect(left).to_have_text("3 of 4 unattended reads left today")
    expect(page.locator("#quota-table")).to_contain_text("FR7613807008043001965405158")

    # And reads Compte perso's balances again and again: each answer's RateLimit says what is left
    for expected in ("2 of 4", "1 of 4", "none of 4"):
        row.get_by_role("button", name="Read balances").click()
        expect(left).to_have_text(f"{expected} unattended reads left today")
    expect(row).to_contain_text("4321.95 EUR")
    quota_row = page.locator("#quota-table tbody tr", has_text="FR7613807008043001965405158")
    expect(quota_row).to_contain_text("balances")
    expect(quota_row.locator("td.num")).to_have_text(["4", "0"])
    expect(page.locator("#quota-resets")).to_contain_text("Europe/Paris")

    # Then the fifth read is refused by the gateway (the bank is not called), saying when the reads come back
    row.get_by_role("button", name="Read balances").click()
    error = page.locator("#accounts-error")
    expect(error).to_contain_text("429")
    expect(error).to_contain_text("quota_exhausted")
    expect(error).to_contain_text("retry at")
    expect(error).to_contain_text("Retry-After")
    expect(error).to_contain_text("the backend waits for the reset")
    expect(page.locator("#quota-last")).to_contain_text("refused: none of 4 unattended reads left today")
    expect(row.locator(".error-text")).to_contain_text("429")
    page.locator("#accounts-step").screenshot(path=str(tmp_path / "quota-exhausted.png"))

    # And every balance read went with the server token naming the user: the three accounts' first reads, then
    # Compte perso's three more and the refused fifth
    assert len(backend_calls) == 3 + 3 + 1
    for headers in backend_calls:
        claims = json.loads(b64url_decode(headers["authorization"].removeprefix("Bearer ").split(".")[1]))
        assert (claims["sub"], claims["scope"], headers["aisp-user"]) == ("backend", "aisp/unattended", user)

    # When the page goes back to the user's app, the same read is served (attended: never counted)
    page.get_by_label("the user's app").check()
    page.locator("#connections-table").get_by_role("button", name="Open").click()
    row.get_by_role("button", name="Read balances").click()
    expect(row).to_contain_text("4321.95 EUR")
    expect(row.locator(".quota-left")).to_have_count(0)
    expect(page.locator("#accounts-error")).to_be_hidden()
