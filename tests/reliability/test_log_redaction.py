"""Log redaction (issue #8): no log line of the whole e2e journey holds a secret.

The journey is the e2e one (``tests/e2e/test_journey.py``'s steps, called as they are): Marc connects, consents, reads
everything, the refresher renews his token, a user refuses at the bank, ``make demo`` runs (its scheduled syncs and
feed reads included). Then a sync again: the scheduled ``AccountSyncFunction`` stores his transactions and balances,
his app and the fintech's backend read the ``transactions/sync`` feed, the backend reads his balances from the
store. Around it, the paths where a secret is most at risk: an access token the bank refuses (on-demand refresh), a
bank failure logged with its traceback, a forged cursor, a replayed callback, a deletion (token revocation). The stack
runs with ``LogLevel=DEBUG``.

Captured: every record of every logger (the functions' Powertools logger formatted by its own formatter, so that its
JSON line with every key is what is scanned; ``local.*``, ``sandbox``, werkzeug, anything else that logs), and
everything written to the process's stdout and stderr at the file-descriptor level (the metrics' EMF lines, prints,
thread tracebacks; a line already captured as a record is scanned once). Third-party libraries keep their production
level (WARNING): at DEBUG, botocore dumps whole request and response bodies (the bank-credentials secret, the
connection items) and urllib3 logs the URLs this test's own browser opens, by design; neither is on in the functions.

Secrets are the ones really issued during the run: the bank's access and refresh tokens and authorization codes (the
sandbox's token generator, recorded), the OAuth ``state`` values (from the login links and the callback requests),
the completion values (from the callback's redirects), the user JWTs (issued and presented), the private keys of the
bank-credentials secret, every IBAN and cursor an answer carried, and the transactions' texts (each remittance line, and
the counterparty a transfer or direct debit names). A line with a transaction's amount and its text is reported as
such too (the text alone is already a leak). Each is looked for as is, URL-encoded and JSON-escaped;
IBANs also with spaces every 4 characters and in lower case; keys line by line (so an escaped or joined PEM is found
too). Any JWT-shaped string, private-key marker or
checksum-valid IBAN is reported even if not recorded. The same scan must flag control lines planted through the same
loggers and stdout with secrets of the run: it can fail. And the sync's table, scanned raw on moto before the
connection is deleted, holds none of the texts, IBANs or cursors in clear. Counted in the reliability summary as
``log-redaction``.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import boto3
import pytest
import requests

import sandbox.oauth
from aisp.iban import is_valid_iban
from local.aws import FAKE_CREDENTIALS
from local.events import HttpResponse, IncomingRequest
from local.stack import RunningStack
from local.template import REGION
from sandbox.store import CODE_BYTES, TOKEN_BYTES
from tests.e2e import test_journey as journey
from tests.integration.journey import raw_strings
from tests.reliability.stack_helpers import BANK, MARC_ACCOUNTS, MARC_IBANS, local_stack
from tests.reliability.tally import record

# The journey, then a first sync of Marc's 1,200-odd transactions through moto's TransactWriteItems, at DEBUG.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(360)]

SUITE: Final = "log-redaction"
CONTROL: Final = "reliability-control"
# Loggers run at DEBUG for the journey (the functions' own logger is set from the stack's environment).
DEBUG_LOGGERS: Final = ("local", "sandbox", "werkzeug")
JWT_SHAPE: Final = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")
PRIVATE_KEY: Final = "PRIVATE KEY"
IBAN_SHAPE: Final = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?:[ ]?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
MIN_PEM_LINE: Final = 40
# Every needle is at least this long (the scan indexes them by their first characters): shorter transaction texts and
# counterparties are left out, they would match innocent lines.
MIN_NEEDLE: Final = 8
SYNC_FUNCTION: Final = "AccountSyncFunction"
# Where a transfer's or a direct debit's remittance names its counterparty (the sandbox's, as BPCE writes them).
COUNTERPARTY_PREFIXES: Final = ("VIR SEPA RECU ", "VIR INST RECU ", "VIR SEPA ", "PRLV SEPA ")
_RECORD_ATTRIBUTES: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class PlainFormatter(logging.Formatter):
    """``LEVEL logger message`` with the traceback and every ``extra`` attribute (nothing a record holds is left
    out of the scan)."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = {key: value for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES}
        return f"{text} {json.dumps(extra, default=repr)}" if extra else text


class EveryLogLine(logging.Handler):
    """On the root logger: every record, formatted by the Powertools formatter for the functions' logger (the exact
    JSON line Lambda would write) and by :class:`PlainFormatter` for the others."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self._powertools: dict[str, logging.Formatter] = {}
        self._plain = PlainFormatter()
        self._levels: dict[logging.Logger, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        # Powertools adds a SuppressFilter for its service to every root handler present when its logger is set up
        # (so that the service's records are not printed twice): this handler must see them all.
        return True

    def emit(self, record: logging.LogRecord) -> None:
        formatter = self._powertools.get(record.name.split(".", 1)[0], self._plain)
        try:
            self.lines.append(formatter.format(record))
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is still scanned
            self.lines.append(repr(vars(record)))

    def debug(self, logger: logging.Logger) -> None:
        """Let ``logger``'s DEBUG records through (its level is put back by :meth:`restore_levels`)."""
        self._levels.setdefault(logger, logger.level)
        logger.setLevel(logging.DEBUG)

    def restore_levels(self) -> None:
        for logger, level in self._levels.items():
            logger.setLevel(level)

    def follow_powertools(self, service: str) -> None:
        """Format ``service``'s records with its Powertools formatter, at DEBUG. The level is set here: Powertools
        configures a service's logger once per process, so an earlier stack's level would stay."""
        powertools_logger = logging.getLogger(service)
        handler = getattr(powertools_logger, "powertools_handler", None)
        assert handler is not None and handler.formatter is not None, f"{service} is not a Powertools logger"
        self._powertools[service] = handler.formatter
        self.debug(powertools_logger)


@contextmanager
def every_log_line() -> Iterator[EveryLogLine]:
    """Capture every log record of the process (loggers that do not propagate included), levels restored after."""
    capture = EveryLogLine()
    root = logging.getLogger()
    root.addHandler(capture)
    for name in DEBUG_LOGGERS:
        capture.debug(logging.getLogger(name))
    isolated = [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    for logger in isolated:
        logger.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for logger in isolated:
            logger.removeHandler(capture)
        capture.restore_levels()


@dataclass
class Secrets:
    """The secrets issued during the run, by kind, and the amounts of the transactions each text belongs to."""

    values: dict[str, set[str]] = field(default_factory=dict)
    amounts: dict[str, set[str]] = field(default_factory=dict)

    def add(self, kind: str, value: str | None) -> None:
        if value:
            self.values.setdefault(kind, set()).add(value)

    def add_transaction(self, item: dict[str, Any]) -> None:
        """A transaction an answer carried: its remittance lines, the counterparty they name, with its amount."""
        for line in item.get("remittance") or []:
            if not isinstance(line, str) or len(line) < MIN_NEEDLE:
                continue
            self.add("transaction text", line)
            self.amounts.setdefault(line, set()).add(str(item["amount"]))
            prefix = next((prefix for prefix in COUNTERPARTY_PREFIXES if line.startswith(prefix)), None)
            name = line.removeprefix(prefix or "")
            if prefix is not None and len(name) >= MIN_NEEDLE:
                self.add("counterparty", name)
                self.amounts.setdefault(name, set()).add(str(item["amount"]))

    def count(self, kind: str) -> int:
        return len(self.values.get(kind, ()))

    def needles(self) -> list[tuple[str, str, str]]:
        """``(kind, text, secret)`` to look for: each secret in the forms a log line could carry it."""
        found: dict[str, tuple[str, str]] = {}
        for kind, values in self.values.items():
            for value in values:
                for needle in _forms(kind, value):
                    found.setdefault(needle, (kind, value))
        return [(kind, needle, value) for needle, (kind, value) in found.items()]


def _forms(kind: str, value: str) -> set[str]:
    if kind == "private key":  # line by line: found raw, JSON-escaped, joined or in a repr
        lines = [line for line in value.splitlines() if len(line) >= MIN_PEM_LINE and "-----" not in line]
        return {form for line in lines for form in (line, quote(line, safe=""))}
    forms = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}
    if kind == "iban":
        spaced = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
        forms |= {value.lower(), spaced, spaced.lower(), quote(spaced, safe=""), quote_plus(spaced)}
    return forms


class Scanner:
    """Finds secrets in log lines: the recorded ones in every form, a transaction's amount beside its text, and
    anything shaped like a JWT, a private key or a valid IBAN.

    Thousands of needles (every transaction text of the run) over thousands of lines: each needle is indexed by its
    first :data:`MIN_NEEDLE` characters, and a line is read once, position by position.
    """

    def __init__(self, secrets: Secrets) -> None:
        self._index: dict[str, list[tuple[str, str, str]]] = {}
        for kind, needle, value in secrets.needles():
            assert len(needle) >= MIN_NEEDLE, (kind, len(needle))
            self._index.setdefault(needle[:MIN_NEEDLE], []).append((kind, needle, value))
        self._amounts = secrets.amounts

    def findings(self, line: str) -> list[str]:
        """The kinds of secret ``line`` holds (empty when clean)."""
        kinds: set[str] = set()
        for start in range(len(line) - MIN_NEEDLE + 1):
            for kind, needle, value in self._index.get(line[start : start + MIN_NEEDLE], ()):
                if line.startswith(needle, start):
                    kinds.add(kind)
                    if any(amount in line for amount in self._amounts.get(value, ())):
                        kinds.add("amount with text")
        if JWT_SHAPE.search(line):
            kinds.add("jwt-shaped")
        if PRIVATE_KEY in line:
            kinds.add("private key marker")
        if any(is_valid_iban("".join(match.split()).upper()) for match in IBAN_SHAPE.findall(line)):
            kinds.add("iban-shaped")
        return sorted(kinds)


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


class Recorder:
    """Records the secrets of the run at the API boundary (requests and answers of the local HTTP API), at the
    local identity provider and at the sandbox's token generator."""

    def __init__(self, secrets: Secrets, monkeypatch: pytest.MonkeyPatch) -> None:
        self.secrets = secrets
        self._monkeypatch = monkeypatch
        original = sandbox.oauth.new_token

        def new_token(nbytes: int = TOKEN_BYTES) -> str:
            token = original(nbytes)
            secrets.add("authorization code" if nbytes == CODE_BYTES else "bank token", token)
            return token

        monkeypatch.setattr(sandbox.oauth, "new_token", new_token)

    def attach(self, stack: RunningStack) -> None:
        issuer = stack.api.issuer
        assert issuer is not None
        issue, handle = issuer.issue, stack.api.handle

        def recording_issue(user: str, **kwargs: Any) -> str:
            token = issue(user, **kwargs)
            self.secrets.add("jwt", token)
            return token

        def recording_handle(request: IncomingRequest) -> HttpResponse:
            self.secrets.add("jwt", (request.header("authorization") or "").rpartition(" ")[2])
            if request.raw_path == "/oauth/callback":
                query = parse_qs(request.raw_query)
                self.secrets.add("authorization code", next(iter(query.get("code", [])), None))
                self.secrets.add("state", next(iter(query.get("state", [])), None))
            response = handle(request)
            self._answer(response)
            for name, value in response.headers:
                if name.lower() == "location":  # the callback's redirect: the app's one-time completion value
                    self.secrets.add("completion", parse_qs(urlsplit(value).query).get("completion", [None])[0])
            return response

        self._monkeypatch.setattr(issuer, "issue", recording_issue)
        self._monkeypatch.setattr(stack.api, "handle", recording_handle)
        for name in ("qwac_key_pem", "qseal_key_pem"):
            self.secrets.add("private key", stack.sandbox.credentials[name])

    def _answer(self, response: HttpResponse) -> None:
        try:
            body = json.loads(response.body)
        except ValueError:
            return
        for key, value in _walk(body):
            if key == "authorization_url" and isinstance(value, str):
                self.secrets.add("state", parse_qs(urlsplit(value).query).get("state", [None])[0])
            elif key == "iban" and isinstance(value, str):
                self.secrets.add("iban", value)
            elif key == "next_cursor" and isinstance(value, str):
                self.secrets.add("cursor", value)
            elif isinstance(value, list):  # added, modified, transactions...
                for item in value:
                    if isinstance(item, dict) and "remittance" in item and "amount" in item:
                        self.secrets.add_transaction(item)


def during_a_sync(stack: RunningStack, secrets: Secrets) -> None:
    """The scheduled sync stores Marc's transactions and balances; his app reads the whole feed, the fintech's backend
    (a server token naming him) its first page and his balances from the store; then the sync's table, scanned raw,
    holds none of what the answers carried in clear."""
    app = journey.App(stack.api_url, "marc")
    backend = requests.Session()
    backend.trust_env = False
    backend.headers.update({"Authorization": f"Bearer {stack.server_token('redaction-backend')}", "Aisp-User": "marc"})
    with backend:
        ran = backend.post(f"{stack.api_url}/_local/schedules/{SYNC_FUNCTION}", json={"due_now": True}, timeout=300)
        assert ran.status_code == 200, ran.text
        assert (ran.json()["synced"], ran.json()["failed"]) == (1, 0), ran.json()
        feed, cursor = f"/v1/connections/{BANK}/transactions/sync", None
        while True:
            page = app.call("GET", feed, params={"count": 500, **({"cursor": cursor} if cursor else {})})
            cursor = page["next_cursor"]
            if not page["has_more"]:
                break
        first = backend.get(stack.api_url + feed, params={"count": 50}, timeout=journey.TIMEOUT)
        assert first.status_code == 200 and first.json()["added"], first.text
        # (Compte perso's balances: the demo spent their quota, so the sync kept the others')
        stored = backend.get(
            f"{stack.api_url}/v1/connections/{BANK}/accounts/{MARC_ACCOUNTS[1]}/balances", timeout=journey.TIMEOUT
        )
        assert stored.status_code == 200 and stored.json()["synced_at"], stored.text  # from the store, not the bank
    assert secrets.count("transaction text") > 100 and secrets.count("counterparty") > 5, secrets.count("counterparty")
    assert secrets.count("cursor") > 1
    assert_sync_table_sealed(stack, Scanner(secrets))


def assert_sync_table_sealed(stack: RunningStack, scanner: Scanner) -> None:
    """Every item of ``SyncTable`` on moto, its raw attribute values (bytes decoded every way): no secret of the
    run, no transaction text, counterparty, IBAN or cursor."""
    dynamodb = boto3.client("dynamodb", endpoint_url=stack.moto_url, region_name=REGION, **FAKE_CREDENTIALS)
    table = stack.resources["SyncTable"].ref
    items = [item for page in dynamodb.get_paginator("scan").paginate(TableName=table) for item in page["Items"]]
    kinds = {item["sk"]["S"].split("#", 1)[0] for item in items}
    assert {"feed", "tx", "chg", "bal", "acct"} <= kinds, kinds
    found = [(item["sk"]["S"], scanner.findings(raw_strings(item))) for item in items]
    assert not [(key, kinds) for key, kinds in found if kinds], [(key, kinds) for key, kinds in found if kinds][:10]
    record(SUITE, cases=len(items))


def around_the_journey(stack: RunningStack, secrets: Secrets) -> None:
    """The paths where secrets are most at risk, as Marc: beneficiaries, an access token the bank refuses, a bank
    failure, a forged cursor, a replayed callback, then deleting the connection (revocation at the bank)."""
    app = journey.App(stack.api_url, "marc")
    admin = requests.Session()
    admin.trust_env = False
    admin.verify = str(stack.sandbox.ca_path)
    balances = f"/v1/connections/{BANK}/accounts/{MARC_ACCOUNTS[0]}/balances"
    with admin:
        app.call("GET", f"/v1/connections/{BANK}/trusted-beneficiaries")
        target = {"bank": BANK, "psu": journey.MARC}
        assert admin.post(f"{stack.sandbox.admin_url}/expire-access-tokens", json=target, timeout=5).ok
        app.call("GET", balances)  # refreshed on demand
        fault = {"fault": "500", "scope": "aisp", "bank": BANK}  # every call, retries included
        assert admin.post(f"{stack.sandbox.admin_url}/faults", json=fault, timeout=5).ok
        failed = app.http.get(stack.api_url + balances, timeout=journey.TIMEOUT)
        assert admin.delete(f"{stack.sandbox.admin_url}/faults", timeout=5).ok
        assert failed.status_code in {502, 503}, failed.text
        transactions = f"/v1/connections/{BANK}/accounts/{MARC_ACCOUNTS[0]}/transactions"
        app.call("GET", transactions, params={"cursor": "c1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, expect=400)
    code, state = sorted(secrets.values["authorization code"])[0], sorted(secrets.values["state"])[0]
    replay = requests.get(
        f"{stack.api_url}/oauth/callback", params={"code": code, "state": state}, allow_redirects=False, timeout=15
    )
    assert replay.status_code in {302, 400}
    app.call("DELETE", f"/v1/connections/{BANK}", expect=204)


def plant_controls(stack: RunningStack, secrets: Secrets) -> dict[str, str]:
    """Log secrets of this run on purpose, through the functions' logger, the local loggers and stdout: the scan
    must find each. Returns each planted line's tag and the kind of secret it holds."""
    powertools = importlib.import_module("aisp.observability").logger  # the stack's copy of the layer
    bank_token = sorted(secrets.values["bank token"])[0]
    key_pem = sorted(secrets.values["private key"])[0]
    jwt = sorted(secrets.values["jwt"])[0]
    state = sorted(secrets.values["state"])[0]
    spaced = " ".join(MARC_IBANS[0][i : i + 4] for i in range(0, len(MARC_IBANS[0]), 4))
    cursor = sorted(value for value in secrets.values["cursor"] if value.startswith("s1."))[0]
    text = sorted(secrets.values["transaction text"])[0]
    counterparty = sorted(secrets.values["counterparty"])[0]
    amount = sorted(secrets.amounts[text])[0]
    tags = [f"{CONTROL}-{number}" for number in range(9)]
    powertools.debug(tags[0], access_token=bank_token)
    powertools.info(tags[1], key=key_pem)  # newlines JSON-escaped by the formatter
    logging.getLogger("local.api").info("%s GET /oauth/callback?state=%s", tags[2], quote(state, safe=""))
    logging.getLogger("sandbox").debug("%s %s", tags[3], jwt)
    print(f"{tags[4]} {spaced.lower()}")  # noqa: T201 - stdout, captured at the file descriptor
    print(f"{tags[5]} iban={quote_plus(spaced)}")  # noqa: T201
    logging.getLogger("local.api").info(
        "%s GET %s?cursor=%s", tags[6], "/v1/connections/13807/transactions/sync", cursor
    )
    powertools.warning(tags[7], amount=amount, label=text)
    powertools.info(tags[8], counterparty=counterparty)
    kinds = ("bank token", "private key", "state", "jwt", "iban", "iban", "cursor", "amount with text", "counterparty")
    return dict(zip(tags, kinds, strict=True))


@dataclass
class Scan:
    lines: int = 0
    leaks: list[tuple[str, list[str]]] = field(default_factory=list)
    controls: list[tuple[str, list[str]]] = field(default_factory=list)


def scan(lines: list[str], scanner: Scanner) -> Scan:
    result = Scan()
    for line in lines:
        kinds = scanner.findings(line)
        if CONTROL in line:
            result.controls.append((line, kinds))
            continue
        result.lines += 1
        if kinds:
            result.leaks.append((line[:3000], kinds))
    return result


def test_no_secret_in_any_log_line_of_the_journey(state_dir, capfd, monkeypatch):
    # Given every log record and every byte written to stdout/stderr captured, and the secrets of the run recorded
    secrets = Secrets()
    recorder = Recorder(secrets, monkeypatch)
    with every_log_line() as capture, local_stack(state_dir, sandbox_admin=True, LogLevel="DEBUG") as stack:
        capture.follow_powertools(stack.environment["POWERTOOLS_SERVICE_NAME"])
        recorder.attach(stack)
        # When the whole e2e journey runs, with the risky paths around it
        journey.test_marc_connects_consents_and_reads_everything(stack)
        around_the_journey(stack, secrets)
        journey.test_a_refusal_at_the_bank_comes_back_as_an_error(stack)
        journey.test_make_demo_prints_marcs_balances(stack)
        during_a_sync(stack, secrets)
        # And control lines are logged with secrets of this run, through the same loggers and stdout
        planted = plant_controls(stack, secrets)
    written = capfd.readouterr()
    # (The functions' lines reach stdout too when their handler writes to this test's stdout: scanned once.)
    records = set(capture.lines)
    lines = [
        *capture.lines,
        *(line for line in [*written.out.splitlines(), *written.err.splitlines()] if line not in records),
    ]

    # Then the run issued every kind of secret, and debug lines were captured too (the functions' own: control 0)
    kinds = ("bank token", "authorization code", "state", "completion", "jwt", "iban", "cursor", "transaction text")
    issued = {kind: secrets.count(kind) for kind in kinds}
    assert all(issued.values()), issued
    assert secrets.count("private key") == 2  # noqa: PLR2004
    assert any(line.startswith("DEBUG local.") and CONTROL not in line for line in capture.lines)
    result = scan(lines, Scanner(secrets))
    record(SUITE, cases=result.lines, leaks=len(result.leaks))

    # And the scan flags every control line (it can fail), and nothing else
    for tag, kind in planted.items():
        assert any(tag in line and kind in found for line, found in result.controls), (tag, result.controls)
    assert all(found for _, found in result.controls), result.controls
    assert result.lines > 200, result.lines  # noqa: PLR2004 - the journey logs hundreds of lines
    assert not result.leaks, "\n".join(f"{found}: {line}" for line, found in result.leaks[:20])
