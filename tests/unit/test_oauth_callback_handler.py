"""OAuthCallbackFunction invoked with the events/oauth_callback payloads (the in-memory stack, a fake bank)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from aisp.models.connection import ConnectionStatus
from functions.connect import app as connect
from functions.oauth_callback import app

SAFE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def with_query(event, **params):
    """The event with its placeholders replaced (see events/oauth_callback/README.md)."""
    query = dict(event["queryStringParameters"])
    for name, value in params.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = value
    event["queryStringParameters"] = query
    event["rawQueryString"] = urlencode(query)
    return event


@pytest.fixture
def started(wired, load_event, lambda_context, bank):
    """Marc's POST /v1/connections through the connect handler; returns the state the bank would echo."""
    response = connect.lambda_handler(load_event("connect/create_connection.json"), lambda_context)
    assert response["statusCode"] == 201
    return bank.of("authorization_url")[-1].kwargs["state"]


def _redirect(response):
    assert response["statusCode"] == 302
    for name, value in SAFE_HEADERS.items():
        assert response["headers"][name] == value
    location = urlsplit(response["headers"]["Location"])
    return f"{location.scheme}://{location.netloc}{location.path}", parse_qs(location.query)


def test_success_redirects_to_the_app_authorized(wired, started, load_event, lambda_context, bank):
    event = with_query(load_event("oauth_callback/success.json"), code="code-from-bank", state=started)

    response = app.lambda_handler(event, lambda_context)

    base, query = _redirect(response)
    connection = wired.connections.find("user-marc", "13807")
    assert base == "https://app.example.com/connections/done"
    assert query == {
        "screen": ["banks"],
        "status": ["authorized"],
        "bank_code": ["13807"],
        "completion": query["completion"],
    }
    assert connection.status is ConnectionStatus.AUTHORIZED
    assert "code-from-bank" not in response["headers"]["Location"]
    assert bank.of("exchange_code")[0].kwargs["code"] == "code-from-bank"


def test_denied_redirects_with_access_denied(wired, started, load_event, lambda_context, bank):
    event = with_query(load_event("oauth_callback/denied.json"), state=started)
    event["rawQueryString"] += "&error_description=L%27utilisateur+a+refus%C3%A9"

    response = app.lambda_handler(event, lambda_context)

    _, query = _redirect(response)
    assert query["status"] == ["error"] and query["error"] == ["access_denied"]
    assert "utilisateur" not in response["headers"]["Location"]
    assert bank.of("exchange_code") == []


def test_a_forged_state_gets_the_invalid_link_page(wired, started, load_event, lambda_context, bank):
    response = app.lambda_handler(load_event("oauth_callback/invalid_state.json"), lambda_context)

    assert response["statusCode"] == 400
    headers = response["headers"]
    assert headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Error-Code"] == "invalid_state"
    assert "invalid_state" in response["body"] and "<script" not in response["body"]
    assert "forged-state" not in response["body"] and "REPLACE_WITH_CODE" not in response["body"]
    assert bank.of("exchange_code") == []
    assert wired.connections.find("user-marc", "13807").status is ConnectionStatus.PENDING


def test_an_expired_state_redirects_with_state_expired(wired, started, load_event, lambda_context, clock, bank):
    clock.advance(minutes=11)
    event = with_query(load_event("oauth_callback/expired_state.json"), code="code-from-bank", state=started)

    response = app.lambda_handler(event, lambda_context)

    _, query = _redirect(response)
    assert query["error"] == ["state_expired"]
    assert bank.of("exchange_code") == []


def test_a_replay_redirects_with_invalid_state(wired, started, load_event, lambda_context, bank):
    event = with_query(load_event("oauth_callback/success.json"), code="code-from-bank", state=started)
    app.lambda_handler(event, lambda_context)

    response = app.lambda_handler(event, lambda_context)

    _, query = _redirect(response)
    assert query["error"] == ["invalid_state"]
    assert len(bank.of("exchange_code")) == 1


@pytest.mark.parametrize(
    "raw_query",
    [
        "",  # no parameters at all
        "code=abc",  # no state
        "code=abc&state=a&state=b",  # a repeated state is not ours
        "state=" + "x" * 300,  # over-long
    ],
)
def test_unusable_queries_get_the_invalid_link_page(wired, load_event, lambda_context, bank, raw_query):
    event = load_event("oauth_callback/success.json")
    event["rawQueryString"] = raw_query
    event["queryStringParameters"] = {}

    response = app.lambda_handler(event, lambda_context)

    assert response["statusCode"] == 400
    assert response["headers"]["X-Error-Code"] == "invalid_state"
    assert bank.calls == []


def _json_lines(text):
    import json

    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


@pytest.fixture
def log_stream():
    """The Powertools logger's JSON lines (its handler holds the stdout of import time, out of capsys' reach)."""
    import io

    from aisp.observability import logger

    buffer = io.StringIO()
    previous = logger.registered_handler.setStream(buffer)
    yield buffer
    logger.registered_handler.setStream(previous)


def test_logs_and_metrics_carry_ids_and_outcomes_never_secrets(
    wired, started, load_event, lambda_context, capsys, log_stream
):
    # Given a successful callback, then its replay
    capsys.readouterr()
    event = with_query(load_event("oauth_callback/success.json"), code="code-from-bank-1234", state=started)
    (completion,) = _redirect(app.lambda_handler(event, lambda_context))[1]["completion"]
    replay = _redirect(app.lambda_handler(event, lambda_context))[1]
    output = log_stream.getvalue() + capsys.readouterr().out  # logs + metrics (EMF)
    _, _, tokens = wired.connections.get_with_all_tokens("user-marc", "13807")

    # Then nothing secret was written: not the code, the state, the tokens or the app's return URL query
    for secret in (
        "code-from-bank-1234",
        started,
        tokens.access_token.get_secret_value(),
        tokens.refresh_token.get_secret_value(),
        "screen=banks",
        completion,
    ):
        assert secret not in output
    assert "completion" not in replay  # the replay carries no completion value
    # And the log lines carry the request id and the connection; the metrics say what happened
    records = _json_lines(output)
    authorized = next(r for r in records if r.get("message") == "connection authorized; awaiting completion")
    assert authorized["correlation_id"] == "req-oauth-callback-success"
    assert authorized["connection_id"].startswith("cn_") and authorized["bank_code"] == "13807"
    metric_names = [
        (metric["Name"], record.get("error_code"))
        for record in records
        if "_aws" in record
        for directive in record["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    ]
    assert ("ConnectionAuthorized", None) in metric_names
    assert ("ConnectionFailed", "invalid_state") in metric_names
