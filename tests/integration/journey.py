"""The user's journey through the gateway's handlers against the offline 89C3 sandbox (shared by the integration
tests): start a connection, log in at the bank's screens as a persona, deliver the callback, then call the consent
and account routes with the events/ payloads. Fixtures (``sandbox``, ``admin``, ``gateway``) are in conftest.py.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import boto3
import requests

from aisp.aws.messaging import EVENT_SOURCE
from functions.accounts import app as accounts_app
from functions.connect import app as connect_app
from functions.consents import app as consents_app
from functions.oauth_callback import app as callback_app
from tests.conftest import CONNECTIONS_TABLE
from tests.sandbox.helpers import MARC, MARC_ACCOUNTS, OTP, flow_id

BANK = "13807"
SYNC = f"/v1/connections/{BANK}/transactions/sync"
API_DOMAIN = "api-id.execute-api.eu-west-3.amazonaws.com"
CALLBACK_URL = f"https://{API_DOMAIN}/oauth/callback"  # what the connect handler derives from the event's domain
RETURN_URL = "https://app.example.com/connections/done?screen=banks"


def event(load_event, name: str, *, sub: str = "user-marc", **query: str) -> dict[str, Any]:
    """An events/ payload for user ``sub`` with ``query`` as its query string."""
    loaded = load_event(name)
    if sub != "user-marc":
        loaded["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = sub
    if query:
        loaded["queryStringParameters"] = query
        loaded["rawQueryString"] = urlencode(query)
    return loaded


def at_path(loaded: dict[str, Any], path: str, **path_parameters: str) -> dict[str, Any]:
    """The same event for another path (e.g. another bank code or account id)."""
    loaded["rawPath"] = loaded["requestContext"]["http"]["path"] = path
    loaded["pathParameters"] = {**loaded.get("pathParameters", {}), **path_parameters}
    return loaded


def start(load_event, lambda_context, *, sub: str = "user-marc", bank_code: str = BANK) -> dict[str, Any]:
    """POST /v1/connections through the connect handler."""
    loaded = event(load_event, "connect/create_connection.json", sub=sub)
    loaded["body"] = json.dumps({**json.loads(loaded["body"]), "bank_code": bank_code})
    response = connect_app.lambda_handler(loaded, lambda_context)
    assert response["statusCode"] == 201, response["body"]
    return json.loads(response["body"])


def login_at_bank(authorization_url: str, *, decision: str = "accept", identifier: str = MARC) -> dict[str, str]:
    """The persona's browser at the sandbox's screens: identifier, OTP, decision; returns the redirect's query."""
    browser = requests.Session()
    browser.trust_env = False
    with browser:
        page = browser.get(authorization_url, allow_redirects=False, timeout=5)
        assert page.status_code == 200, page.text
        screens = authorization_url.split("?", 1)[0]
        flow = flow_id(page.text)
        assert browser.post(screens, data={"flow": flow, "identifier": identifier}, timeout=5).status_code == 200
        assert browser.post(screens, data={"flow": flow, "otp": OTP}, timeout=5).status_code == 200
        decided = browser.post(screens, data={"flow": flow, "decision": decision}, allow_redirects=False, timeout=5)
    assert decided.status_code == 302, decided.text
    location = decided.headers["Location"]
    assert location.startswith(CALLBACK_URL + "?")  # the bank sends the browser to our callback
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def call_back(load_event, lambda_context, name: str = "oauth_callback/success.json", **query: str) -> dict[str, Any]:
    """GET /oauth/callback through the callback handler, with the bank's query in place of the placeholders."""
    return callback_app.lambda_handler(event(load_event, name, **query), lambda_context)


def complete(
    load_event, lambda_context, completion: str, *, sub: str = "user-marc", bank_code: str = BANK
) -> dict[str, Any]:
    """POST /v1/connections/{bank_code}/complete through the connect handler; returns the raw response."""
    loaded = event(load_event, "connect/complete_connection.json", sub=sub)
    if bank_code != BANK:
        loaded = at_path(loaded, f"/v1/connections/{bank_code}/complete", bank_code=bank_code)
    loaded["body"] = json.dumps({"completion": completion})
    return connect_app.lambda_handler(loaded, lambda_context)


def redirect_query(response: dict[str, Any]) -> dict[str, str]:
    assert response["statusCode"] == 302, response.get("body")
    assert response["headers"]["Cache-Control"] == "no-store"
    assert response["headers"]["Referrer-Policy"] == "no-referrer"
    location = response["headers"]["Location"]
    assert location.startswith("https://app.example.com/connections/done?")
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def list_connections(load_event, lambda_context, *, sub: str = "user-marc") -> list[dict[str, Any]]:
    response = connect_app.lambda_handler(event(load_event, "connect/list_connections.json", sub=sub), lambda_context)
    assert response["statusCode"] == 200
    return list(json.loads(response["body"])["connections"])


def connect_persona(
    load_event, lambda_context, *, identifier: str = MARC, sub: str = "user-marc", bank_code: str = BANK
) -> tuple[dict[str, Any], dict[str, str]]:
    """The whole connect journey for a persona: returns the connect answer and the bank's redirect query."""
    started = start(load_event, lambda_context, sub=sub, bank_code=bank_code)
    bank_redirect = login_at_bank(started["authorization_url"], identifier=identifier)
    response = call_back(load_event, lambda_context, code=bank_redirect["code"], state=bank_redirect["state"])
    back = redirect_query(response)
    assert back["status"] == "authorized", back
    completed = complete(load_event, lambda_context, back["completion"], sub=sub, bank_code=bank_code)
    assert completed["statusCode"] == 200, completed["body"]
    assert json.loads(completed["body"])["status"] == "active"
    return started, bank_redirect


def connect_marc(load_event, lambda_context) -> tuple[dict[str, Any], dict[str, str]]:
    return connect_persona(load_event, lambda_context)


def accounts(loaded: dict[str, Any], lambda_context) -> tuple[dict[str, Any], Any]:
    """Invoke the accounts function; returns the raw response and its decoded body."""
    response = accounts_app.lambda_handler(loaded, lambda_context)
    return response, json.loads(response["body"]) if response.get("body") else None


def consent(loaded: dict[str, Any], lambda_context) -> tuple[dict[str, Any], Any]:
    """Invoke the consents function; returns the raw response and its decoded body."""
    response = consents_app.lambda_handler(loaded, lambda_context)
    return response, json.loads(response["body"]) if response.get("body") else None


def as_backend(loaded: dict[str, Any], user: str = "user-marc") -> dict[str, Any]:
    """The same event from the fintech backend's server token (scope ``aisp/unattended``) for ``user``."""
    jwt = loaded["requestContext"]["authorizer"]["jwt"]
    jwt["scopes"] = ["aisp/unattended"]
    jwt["claims"] |= {"sub": "fintech-backend-client", "scope": "aisp/unattended"}
    loaded["headers"]["aisp-user"] = user
    return loaded


# The feed of synced transactions, read through the route, against the live transactions route


def sync_feed(load_event, lambda_context, cursor: str | None = None) -> tuple[list[tuple[str, Any]], str]:
    """Every change after ``cursor`` through ``transactions/sync`` (pages of 100): (kind, item), and the cursor after
    them."""
    changes: list[tuple[str, Any]] = []
    while True:
        query = {"count": "100", **({"cursor": cursor} if cursor else {})}
        loaded = at_path(event(load_event, "accounts/sync_transactions.json", **query), SYNC, bank_code=BANK)
        response, body = accounts(loaded, lambda_context)
        assert response["statusCode"] == 200, body
        changes += [("added", item) for item in body["added"]] + [("modified", item) for item in body["modified"]]
        changes += [("removed", item) for item in body["removed"]]
        cursor = body["next_cursor"]
        if not body["has_more"]:
            return changes, str(cursor)


def live_transactions(load_event, lambda_context) -> dict[str, dict[str, Any]]:
    """What the live route lists now (the user present: no quota spent), every page, for each of Marc's accounts:
    (account, bank id) → transaction."""
    listed: dict[str, dict[str, Any]] = {}
    for account in MARC_ACCOUNTS:
        path = f"/v1/connections/{BANK}/accounts/{account}/transactions"
        loaded = at_path(event(load_event, "accounts/get_transactions.json", all="true"), path, account_id=account)
        response, body = accounts(loaded, lambda_context)
        if response["statusCode"] == 403:  # not consented for transactions
            continue
        assert response["statusCode"] == 200, body
        listed |= {f"{account}/{item['id']}": item for item in body["transactions"]}
    return listed


def replay(state: dict[str, dict[str, Any]], changes: list[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    """``state`` (account/bank id → transaction) with ``changes`` applied as a client would; an id added twice
    fails."""
    by_transaction_id = {item["transaction_id"]: key for key, item in state.items()}
    for kind, item in changes:
        if kind == "removed":
            state.pop(by_transaction_id.pop(item["transaction_id"]))
            continue
        key = f"{item['account_id']}/{item['id']}"
        assert kind == "modified" or key not in state, f"{key} added twice"
        state[key] = item
        by_transaction_id[item["transaction_id"]] = key
    return state


def bank_fields(item: dict[str, Any]) -> dict[str, Any]:
    """A synced transaction without what the gateway adds: what the live route shows."""
    return {k: v for k, v in item.items() if k not in {"transaction_id", "account_id", "pending_transaction_id"}}


class SharedClock:
    """The gateway's clock moved with the sandbox's: real time plus the offset its admin API reports."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self.offset, UTC).replace(microsecond=0)

    def advance(self, admin: requests.Session, admin_url: str, seconds: float) -> None:
        """Move the sandbox's clock by ``seconds`` (its admin API), and this one with it."""
        answer = admin.post(f"{admin_url}/clock", json={"advance_seconds": seconds}, timeout=5)
        assert answer.status_code == 200, answer.text
        self.offset = answer.json()["clock_offset_seconds"]


def bus_inbox(bus: str, *, queue_name: str) -> Callable[[], list[dict[str, Any]]]:
    """A bus on moto with a rule copying every gateway event into an SQS queue; returns a reader of what arrived
    since it last read (each message's body, parsed)."""
    sqs, events = boto3.client("sqs"), boto3.client("events")
    queue = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.create_event_bus(Name=bus)
    events.put_rule(Name="gateway-events", EventBusName=bus, EventPattern=json.dumps({"source": [EVENT_SOURCE]}))
    events.put_targets(Rule="gateway-events", EventBusName=bus, Targets=[{"Id": "inbox", "Arn": arn}])

    def received() -> list[dict[str, Any]]:
        bodies: list[dict[str, Any]] = []
        while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                bodies.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return bodies

    return received


def closed_port() -> int:
    """A local TCP port with nothing listening (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def raw_strings(item: dict[str, Any]) -> str:
    """Every value of a raw DynamoDB item, bytes decoded every way a token could hide in them (latin-1, utf-8,
    hex), in one string."""
    parts: list[str] = []
    for value in item.values():
        for raw in value.values():
            if isinstance(raw, bytes):
                parts += [raw.decode("latin-1"), raw.decode("utf-8", "replace"), raw.hex()]
            else:
                parts.append(json.dumps(raw))
    return "\n".join(parts)


def all_raw_values(aws) -> str:
    """:func:`raw_strings` of every connection item, in one string."""
    return "\n".join(raw_strings(item) for item in aws.dynamodb.scan(TableName=CONNECTIONS_TABLE)["Items"])
