"""Functions whose features land in later issues answer honestly: 501 for routes, a logged no-op for the schedule."""

from __future__ import annotations

import json

import pytest

from functions.accounts import app as accounts
from functions.consents import app as consents
from functions.token_refresher import app as token_refresher


@pytest.mark.parametrize(
    ("module", "method", "path", "issue"),
    [
        (consents, "PUT", "/v1/connections/13807/consent", "issue 5"),
        (accounts, "GET", "/v1/accounts", "issue 5"),
        (accounts, "GET", "/v1/connections/13807/accounts/038-CPT30019654051/transactions", "issue 5"),
        (accounts, "GET", "/v1/connections/13807/identity", "issue 5"),
    ],
)
def test_declared_routes_say_which_issue_brings_them(load_event, lambda_context, module, method, path, issue):
    event = load_event("connect/list_banks.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method

    response = module.lambda_handler(event, lambda_context)

    assert response["statusCode"] == 501
    body = json.loads(response["body"])
    assert body["code"] == "not_implemented"
    assert issue in body["detail"]


def test_refresher_accepts_the_scheduler_event_and_reports_not_implemented(load_event, lambda_context, caplog):
    response = token_refresher.lambda_handler(load_event("token_refresher/scheduled.json"), lambda_context)

    assert response == {"status": "not_implemented"}
    assert "token refresher not implemented yet (issue 6)" in caplog.messages
