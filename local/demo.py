"""``python -m local.demo`` (``make demo``): the quickstart page's journey, headless, over HTTP only.

Against a running ``make run`` (``--base-url``, default http://127.0.0.1:3000), as a fintech app would do it:

1. a token for the user (``GET /_local/token``, the local identity provider);
2. ``GET /v1/banks``, then ``POST /v1/connections`` with this API's root as ``return_url``;
3. the bank's login screens, found from the ``authorization_url`` alone (identifier, one-time code, accept), then
   the bank's redirect to the gateway's ``/oauth/callback``, which sends the browser back to ``return_url`` with a
   one-time ``completion`` value, and ``POST .../complete`` with it, as the same user;
4. ``GET /v1/connections`` (status), ``GET .../accounts``, ``PUT .../consent`` for every account;
5. each account's balances and all of its transactions (``next_cursor`` while ``has_more``), the identity;
6. the connection's status again, and the numbers;
7. the same data without the user, as the fintech's backend: a server token (``GET /_local/token?client=backend&
   scope=aisp/unattended``) naming the user in ``Aisp-User``; one account's balances read until the day's quota is
   spent (each answer's ``RateLimit``, then ``429 quota_exhausted`` with ``retry_at``), and ``GET .../quota``.
8. the background sync: the scheduled ``AccountSyncFunction`` run now (``POST /_local/schedules/...``), the feed
   (``GET .../transactions/sync``) read to its end; the bank's clock moved a day (``POST /_local/sandbox/clock``),
   the sync again, and the feed from the saved cursor: only that day's changes.

The only things it knows beforehand are the sandbox's documented test persona (sandbox/README.md: Marc,
``D0999990I0``, one-time code ``12345678``) and the form field names of its screens (``identifier``, ``otp``,
``decision``). Exit status 0 when the journey ends with balances, 1 when a step fails (the message says which).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Final, TextIO
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import requests

DEFAULT_BASE_URL: Final = "http://127.0.0.1:3000"
DEFAULT_USER: Final = "marc"
DEFAULT_BANK: Final = "13807"
# The sandbox's documented test persona (sandbox/README.md, "Personas"): Marc at B.P Grand Ouest.
DEFAULT_IDENTIFIER: Final = "D0999990I0"
DEFAULT_OTP: Final = "12345678"
TIMEOUT: Final = 30.0
MAX_SCREENS: Final = 8
MAX_PAGES: Final = 50
HTTP_OK: Final = 200
HTTP_REDIRECT: Final = frozenset({301, 302, 303, 307, 308})
HTTP_TOO_MANY_REQUESTS: Final = 429
SERVER_CLIENT: Final = "backend"
UNATTENDED_SCOPE: Final = "aisp/unattended"
SYNC_FUNCTION: Final = "AccountSyncFunction"
SYNC_PAGE: Final = 500
DAY_SECONDS: Final = 86_400


class DemoError(Exception):
    """A step of the journey failed; the message says which and why."""


def problem_text(response: requests.Response) -> str:
    """An error answer in one line: status, then the problem+json title, code and detail (or API Gateway's
    ``message``, or the start of the body)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}: {response.text[:200]!r}"
    parts = [f"HTTP {response.status_code} {body.get('title') or body.get('message') or ''}".rstrip()]
    for name in ("code", "detail", "request_id"):
        if body.get(name):
            parts.append(f"{name}={body[name]}")
    parts += [f"{error.get('field', 'field')}: {error.get('message')}" for error in body.get("errors") or []]
    return ", ".join(parts)


@dataclass
class Gateway:
    """The gateway's HTTP API, called with the user's token."""

    base_url: str
    session: requests.Session = field(default_factory=requests.Session)
    token: str | None = None
    acting_for: str | None = None  # with a server token: the user named in Aisp-User

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> requests.Response:
        """One call to the API, whatever it answers; raise :class:`DemoError` when it cannot be reached."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.acting_for:
            headers["Aisp-User"] = self.acting_for
        try:
            return self.session.request(
                method, self.base_url + path, json=body, params=params, headers=headers, timeout=TIMEOUT
            )
        except requests.RequestException as exc:
            reason = type(exc).__name__
            raise DemoError(
                f"{method} {path}: cannot reach {self.base_url} ({reason}): is `make run` running?"
            ) from exc

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        expect: int = HTTP_OK,
    ) -> Any:
        """Call the API and return its decoded JSON body (``None`` when empty); raise :class:`DemoError` otherwise."""
        response = self.request(method, path, body=body, params=params)
        if response.status_code != expect:
            raise DemoError(f"{method} {path}: {problem_text(response)}")
        return response.json() if response.content else None


@dataclass
class ScreenForm:
    """The form of one login screen: where it posts, its hidden fields, inputs, submit buttons and error text."""

    action: str | None = None
    hidden: dict[str, str] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    buttons: list[tuple[str, str]] = field(default_factory=list)
    error: str = ""


class _ScreenParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.form = ScreenForm()
        self._in_error = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and self.form.action is None:
            self.form.action = attributes.get("action", "")
        elif tag == "input" and attributes.get("name"):
            if attributes.get("type") == "hidden":
                self.form.hidden[attributes["name"]] = attributes.get("value", "")
            else:
                self.form.inputs.append(attributes["name"])
        elif tag == "button" and attributes.get("name"):
            self.form.buttons.append((attributes["name"], attributes.get("value", "")))
        self._in_error = "error" in attributes.get("class", "").split() or attributes.get("id") == "error"

    def handle_endtag(self, tag: str) -> None:
        self._in_error = False

    def handle_data(self, data: str) -> None:
        if self._in_error:
            self.form.error = f"{self.form.error} {data.strip()}".strip()


def parse_screen(html: str) -> ScreenForm:
    """The login form of a bank screen."""
    parser = _ScreenParser()
    parser.feed(html)
    parser.close()
    return parser.form


def screen_answer(form: ScreenForm, *, identifier: str, otp: str) -> tuple[str, dict[str, str]]:
    """What the persona types on this screen: its name and the form data to post."""
    data = dict(form.hidden)
    if "identifier" in form.inputs:
        return "identification", {**data, "identifier": identifier}
    if "otp" in form.inputs:
        return "one-time code", {**data, "otp": otp}
    if ("decision", "accept") in form.buttons:
        return "decision", {**data, "decision": "accept"}
    raise DemoError(f"unexpected bank screen (inputs {form.inputs}, buttons {form.buttons}): {form.error or ''}")


def log_in_at_bank(authorization_url: str, *, identifier: str, otp: str, say: Callable[[str], None]) -> str:
    """Drive the bank's login screens like a browser; return the URL the bank redirects back to (the callback).

    Everything comes from ``authorization_url``: the screens' address and the ``redirect_uri`` that marks the end.
    """
    redirect_uri = parse_qs(urlsplit(authorization_url).query).get("redirect_uri", [""])[0]
    if not redirect_uri:
        raise DemoError("the authorization_url carries no redirect_uri")
    url = authorization_url
    with requests.Session() as browser:
        browser.trust_env = False  # the bank's screens are on this machine: no proxy
        response = browser.get(url, allow_redirects=False, timeout=TIMEOUT)
        for _ in range(MAX_SCREENS):
            if response.status_code in HTTP_REDIRECT:
                url = urljoin(url, response.headers["Location"])
                if url.startswith(redirect_uri + "?"):
                    return url
                response = browser.get(url, allow_redirects=False, timeout=TIMEOUT)
                continue
            if response.status_code != HTTP_OK:
                raise DemoError(f"bank screen {url}: HTTP {response.status_code}: {response.text[:200]!r}")
            form = parse_screen(response.text)
            if form.error:
                raise DemoError(f"the bank refused the login: {form.error}")
            step, data = screen_answer(form, identifier=identifier, otp=otp)
            say(f"   bank screen: {step}")
            url = urljoin(url, form.action or url)
            response = browser.post(url, data=data, allow_redirects=False, timeout=TIMEOUT)
    raise DemoError(f"the bank did not redirect back after {MAX_SCREENS} screens")


def follow_callback(session: requests.Session, callback_url: str) -> dict[str, str]:
    """The browser at the gateway's ``/oauth/callback``: returns the query the gateway sends it back to the app with."""
    try:
        response = session.get(callback_url, allow_redirects=False, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise DemoError(f"GET /oauth/callback: {exc}") from exc
    if response.status_code not in HTTP_REDIRECT:
        code = response.headers.get("X-Error-Code", "")
        raise DemoError(f"GET /oauth/callback: HTTP {response.status_code} {code}".rstrip())
    location = response.headers["Location"]
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def balances_text(balances: Sequence[Mapping[str, Any]]) -> str:
    """``4321.95 / 4179.95 / 4348.95 EUR`` (one currency) or ``1 EUR / 2 USD``."""
    currencies = {balance["currency"] for balance in balances}
    if len(currencies) == 1:
        return " / ".join(balance["amount"] for balance in balances) + f" {currencies.pop()}"
    return " / ".join(f"{balance['amount']} {balance['currency']}" for balance in balances)


def connection_text(connection: Mapping[str, Any]) -> str:
    """One connection of ``GET /v1/connections`` in a line."""
    return (
        f"{connection['bank_code']} {connection['status']} (connection {connection['connection_id']}, "
        f"access token until {connection.get('access_expires_at')}, log in again by {connection.get('reauth_due_at')})"
    )


@dataclass
class Journey:
    """The journey's steps against one gateway; ``say`` prints a line."""

    gateway: Gateway
    out: TextIO
    user: str
    bank_code: str
    identifier: str
    otp: str
    step: int = 0

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def title(self, text: str) -> None:
        self.step += 1
        self.say(f"\n{self.step}. {text}")

    def run(self) -> dict[str, Any]:
        """The whole journey; returns the numbers (also printed)."""
        api = self.gateway
        self.title(f"token for user {self.user!r}: GET /_local/token")
        api.token = api.call("GET", "/_local/token", params={"user": self.user})["access_token"]
        self.say("   ok (a JWT from the local issuer)")

        self.title("banks: GET /v1/banks")
        banks = api.call("GET", "/v1/banks")["banks"]
        bank = next((b for b in banks if b["bank_code"] == self.bank_code), None)
        if bank is None:
            raise DemoError(f"bank {self.bank_code} is not in GET /v1/banks")
        self.say(f"   {len(banks)} banks; using {bank['name']} ({bank['bank_code']})")

        self.connect()
        connection = self.connection_status()

        self.title(f"accounts before consent: GET /v1/connections/{self.bank_code}/accounts")
        accounts = self.accounts()
        consent = self.consent(accounts, bank)

        self.title(f"accounts after consent: GET /v1/connections/{self.bank_code}/accounts")
        accounts = self.accounts()
        if bank["capabilities"].get("identity") and consent["psu_identity"]:
            identity = api.call("GET", f"/v1/connections/{self.bank_code}/identity")
            self.say(f"   identity: {identity.get('full_name')}")

        balances = self.balances(accounts)
        transactions = self.transactions(accounts)
        connection = self.connection_status()

        self.title("done")
        self.say(f"   accounts: {len(accounts)}")
        for account in accounts:
            label = account.get("iban") or account["account_id"]
            amounts = balances.get(account["account_id"])
            self.say(f"   balances {label} {account.get('name')}: {balances_text(amounts) if amounts else '-'}")
        total = sum(transactions.values())
        self.say(f"   transactions: {total} ({', '.join(str(count) for count in transactions.values())})")
        self.say(f"   connection: {connection['status']}")
        unattended = self.unattended(accounts)
        sync = self.sync()
        return {
            "accounts": accounts,
            "balances": balances,
            "transactions": transactions,
            "connection": connection,
            "unattended": unattended,
            "sync": sync,
        }

    def unattended(self, accounts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The fintech's backend reads one account's balances without the user until the day's quota is spent."""
        self.title(f"as the fintech's backend: GET /_local/token?client={SERVER_CLIENT}&scope={UNATTENDED_SCOPE}")
        token = self.gateway.call("GET", "/_local/token", params={"client": SERVER_CLIENT, "scope": UNATTENDED_SCOPE})
        backend = Gateway(self.gateway.base_url, self.gateway.session, token["access_token"], acting_for=self.user)
        self.say(f'   ok (a server token: sub "{SERVER_CLIENT}", no user; it names the user in Aisp-User: {self.user})')

        account = next((a for a in accounts if a["links"].get("balances")), None)
        if account is None:
            raise DemoError("no account with balances in the consent")
        label = account.get("iban") or account["account_id"]
        path = f"/v1/connections/{self.bank_code}/accounts/{quote(account['account_id'], safe='')}/balances"
        self.title(f"unattended balances of {label}: GET {path} with Aisp-User, no PSU-* header")
        read = 0
        while True:
            read += 1
            response = backend.request("GET", path)
            rate_limit = response.headers.get("RateLimit", "-")
            if response.status_code != HTTP_OK:
                break
            self.say(f"   read {read}: {HTTP_OK}, RateLimit {rate_limit}")
            if read > MAX_PAGES:
                raise DemoError(f"{path}: still served after {MAX_PAGES} unattended reads")
        refused = response.json() if response.status_code == HTTP_TOO_MANY_REQUESTS else {}
        if refused.get("code") != "quota_exhausted":
            raise DemoError(f"GET {path} read {read}: {problem_text(response)}")
        self.say(
            f"   read {read}: {HTTP_TOO_MANY_REQUESTS} quota_exhausted, retry_at {refused['retry_at']} "
            f"(Retry-After {response.headers.get('Retry-After')} s, RateLimit {rate_limit}): the bank was not called"
        )

        quota_path = f"/v1/connections/{self.bank_code}/quota"
        self.title(f"today's quota: GET {quota_path}")
        quota = backend.call("GET", quota_path)
        for counter in quota["usage"]:
            self.say(
                f"   {counter['method']} {counter.get('account_id') or '-'}: "
                f"used {counter['used']}, {counter['remaining']} left of {quota['limit']}"
            )
        self.say(f"   resets at {quota['resets_at']} (midnight {quota['time_zone']})")
        return {"served": read - 1, "retry_at": refused["retry_at"], "quota": quota}

    def sync(self) -> dict[str, Any]:
        """The scheduled sync run now, its feed read; the bank's clock moved a day, the sync again, what changed."""
        path = f"/v1/connections/{self.bank_code}/transactions/sync"
        self.title(f"the scheduled sync, now: POST /_local/schedules/{SYNC_FUNCTION} {{due_now: true}}")
        first = self.run_sync()
        self.title(f"the sync feed: GET {path} (every page, has_more)")
        initial = self.read_feed(None)

        self.title("the bank's clock a day ahead: POST /_local/sandbox/clock {advance_seconds: 86400}")
        moved = self.gateway.call("POST", "/_local/sandbox/clock", body={"advance_seconds": DAY_SECONDS})
        self.say(f"   the bank's time: {moved['now']}; the gateway's stays {moved['gateway_now']}")

        self.title(f"the sync again: POST /_local/schedules/{SYNC_FUNCTION} {{due_now: true}}")
        second = self.run_sync()
        self.title(f"what changed: GET {path}?cursor=<the saved next_cursor>")
        changes = self.read_feed(initial["next_cursor"])
        settled = sum(1 for tx in changes["added"] if tx.get("pending_transaction_id"))
        if settled:
            self.say(f"   {settled} booked transaction(s) settle a pending one (pending_transaction_id)")
        return {"runs": [first, second], "first": initial, "changes": changes}

    def run_sync(self) -> dict[str, Any]:
        summary: dict[str, Any] = self.gateway.call(
            "POST", f"/_local/schedules/{SYNC_FUNCTION}", body={"due_now": True}
        )
        self.say(
            f"   run: {summary['synced']} connection(s) synced, {summary['deferred']} deferred; "
            f"{summary['added']} added, {summary['modified']} modified, {summary['removed']} removed "
            f"in {summary['duration_ms']} ms"
        )
        return summary

    def read_feed(self, cursor: str | None) -> dict[str, Any]:
        """Every page of the feed from ``cursor``; its changes, the last ``next_cursor`` and ``synced_at``."""
        path = f"/v1/connections/{self.bank_code}/transactions/sync"
        changes: dict[str, Any] = {"added": [], "modified": [], "removed": []}
        pages = 0
        while True:
            pages += 1
            if pages > MAX_PAGES:
                raise DemoError(f"{path}: still has_more after {MAX_PAGES} pages")
            params: dict[str, str | int] = {"count": SYNC_PAGE, **({"cursor": cursor} if cursor else {})}
            page = self.gateway.call("GET", path, params=params)
            for kind in ("added", "modified", "removed"):
                changes[kind] += page[kind]
            cursor = page["next_cursor"]
            if not page["has_more"]:
                break
        changes["next_cursor"], changes["synced_at"] = cursor, page["synced_at"]
        self.say(
            f"   {len(changes['added'])} added, {len(changes['modified'])} modified, {len(changes['removed'])} "
            f"removed in {pages} page(s); synced_at {page['synced_at']}"
        )
        return changes

    def connect(self) -> None:
        api = self.gateway
        return_url = api.base_url + "/"
        self.title(f"connect: POST /v1/connections {{bank_code: {self.bank_code}, return_url: {return_url}}}")
        started = api.call(
            "POST", "/v1/connections", body={"bank_code": self.bank_code, "return_url": return_url}, expect=201
        )
        self.say(f"   connection {started['connection_id']}; login link valid until {started['expires_at']}")
        authorization_url = started["authorization_url"]
        self.say(f"   authorization_url: {authorization_url.split('?', 1)[0]}?...")

        self.title(f"the bank's login screens as {self.identifier}")
        try:
            callback_url = log_in_at_bank(authorization_url, identifier=self.identifier, otp=self.otp, say=self.say)
        except requests.RequestException as exc:
            raise DemoError(f"the bank's login screens: {exc}") from exc
        self.say(f"   the bank redirects the browser to {callback_url.split('?', 1)[0]}")

        self.title("callback: GET /oauth/callback")
        outcome = follow_callback(api.session, callback_url)
        if outcome.get("status") != "authorized" or not outcome.get("completion"):
            raise DemoError(f"the connection failed: status={outcome.get('status')} error={outcome.get('error')}")
        self.say(f"   back at {return_url} with status=authorized and a one-time completion value")

        self.title(f"complete: POST /v1/connections/{self.bank_code}/complete {{completion}}")
        done = api.call(
            "POST", f"/v1/connections/{self.bank_code}/complete", body={"completion": outcome["completion"]}
        )
        self.say(f"   {connection_text(done)}")

    def connection_status(self) -> dict[str, Any]:
        self.title("status: GET /v1/connections")
        connections = self.gateway.call("GET", "/v1/connections")["connections"]
        for connection in connections:
            self.say(f"   {connection_text(connection)}")
        mine = next((c for c in connections if c["bank_code"] == self.bank_code), None)
        if mine is None:
            raise DemoError(f"no connection to {self.bank_code} in GET /v1/connections")
        return dict(mine)

    def accounts(self) -> list[dict[str, Any]]:
        listed = self.gateway.call("GET", f"/v1/connections/{self.bank_code}/accounts")
        accounts: list[dict[str, Any]] = listed["accounts"]
        for account in accounts:
            links = account["links"]
            readable = [name for name in ("balances", "transactions") if links.get(name)]
            self.say(
                f"   {account['account_id']}  {account.get('iban') or '(no IBAN)'}  {account.get('name')}"
                f"  [{', '.join(readable) or 'not consented'}]"
            )
        return accounts

    def consent(self, accounts: Sequence[Mapping[str, Any]], bank: Mapping[str, Any]) -> dict[str, Any]:
        ibans = [account["iban"] for account in accounts if account.get("iban")]
        capabilities = bank["capabilities"]
        body = {
            "balances": ibans,
            "transactions": ibans,
            "psu_identity": bool(capabilities.get("identity")),
            "trusted_beneficiaries": bool(capabilities.get("trusted_beneficiaries")),
        }
        self.title(f"consent: PUT /v1/connections/{self.bank_code}/consent (balances + transactions on every IBAN)")
        answer = self.gateway.call("PUT", f"/v1/connections/{self.bank_code}/consent", body=body)
        consent: dict[str, Any] = answer["consent"]
        self.say(
            f"   in force: balances {len(consent['balances'])}, transactions {len(consent['transactions'])}, "
            f"identity {consent['psu_identity']}, beneficiaries {consent['trusted_beneficiaries']}"
        )
        return consent

    def balances(self, accounts: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        self.title(f"balances: GET /v1/connections/{self.bank_code}/accounts/{{account_id}}/balances")
        found: dict[str, list[dict[str, Any]]] = {}
        for account in accounts:
            if not account["links"].get("balances"):
                continue
            account_id = account["account_id"]
            path = f"/v1/connections/{self.bank_code}/accounts/{quote(account_id, safe='')}/balances"
            found[account_id] = self.gateway.call("GET", path)["balances"]
            lines = ", ".join(f"{b['type']} {b['amount']} {b['currency']}" for b in found[account_id])
            self.say(f"   {account.get('iban') or account_id}: {lines}")
        return found

    def transactions(self, accounts: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        self.title(f"transactions: GET /v1/connections/{self.bank_code}/accounts/{{account_id}}/transactions")
        counts: dict[str, int] = {}
        for account in accounts:
            if not account["links"].get("transactions"):
                continue
            account_id = account["account_id"]
            path = f"/v1/connections/{self.bank_code}/accounts/{quote(account_id, safe='')}/transactions"
            cursor: str | None = None
            pages: list[int] = []
            newest: dict[str, Any] | None = None
            for _ in range(MAX_PAGES):
                page = self.gateway.call("GET", path, params={"cursor": cursor} if cursor else None)
                pages.append(len(page["transactions"]))
                newest = newest or (page["transactions"][0] if page["transactions"] else None)
                if not page["has_more"]:
                    break
                cursor = page["next_cursor"]
            else:
                raise DemoError(f"{path}: still a next_cursor after {MAX_PAGES} pages")
            counts[account_id] = sum(pages)
            latest = f"; newest {newest['amount']} {newest['currency']} ({newest['status']})" if newest else ""
            self.say(
                f"   {account.get('iban') or account_id}: {counts[account_id]} in {len(pages)} pages "
                f"({' + '.join(map(str, pages))}){latest}"
            )
        return counts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m local.demo",
        description="The quickstart journey over HTTP against a running `make run`: connect, consent, accounts, "
        "balances, transactions.",
    )
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help=f"the local API (default {DEFAULT_BASE_URL})")
    parser.add_argument("--user", default=DEFAULT_USER, help=f"the app's user id, the JWT sub (default {DEFAULT_USER})")
    parser.add_argument("--bank", default=DEFAULT_BANK, help=f"establishment code (default {DEFAULT_BANK})")
    parser.add_argument(
        "--identifier",
        default=DEFAULT_IDENTIFIER,
        help=f"the sandbox persona's identifier (default {DEFAULT_IDENTIFIER})",
    )
    parser.add_argument("--otp", default=DEFAULT_OTP, help=f"the persona's one-time code (default {DEFAULT_OTP})")
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the journey; 0 on success, 1 when a step fails (printed on stderr)."""
    args = _parser().parse_args(argv)
    stream = out or sys.stdout
    base_url = args.base_url.rstrip("/")
    stream.write(
        f"AISP gateway demo against {base_url}: user {args.user}, bank {args.bank}, persona {args.identifier}\n"
    )
    with requests.Session() as session:
        session.trust_env = False  # everything is on this machine: no proxy
        journey = Journey(
            gateway=Gateway(base_url, session),
            out=stream,
            user=args.user,
            bank_code=args.bank,
            identifier=args.identifier,
            otp=args.otp,
        )
        try:
            journey.run()
        except DemoError as exc:
            stream.flush()
            sys.stderr.write(f"\ndemo failed at step {journey.step}: {exc}\n")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
