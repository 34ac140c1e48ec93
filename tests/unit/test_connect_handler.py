"""ConnectFunction handler, invoked with the events/ payloads."""

from __future__ import annotations

import json

from functions.connect import app


def test_list_banks_returns_the_registry_with_the_seed_sandbox_banks(load_event, lambda_context):
    # Given the GET /v1/banks event of an authenticated user
    event = load_event("connect/list_banks.json")

    # When the handler runs
    response = app.lambda_handler(event, lambda_context)

    # Then it answers 200 with every establishment, the seed's two 13807 brands included
    assert response["statusCode"] == 200
    banks = json.loads(response["body"])
    seed = [(b["bank_code"], b["short_name"], b["name"]) for b in banks if b["bank_code"] == "13807"]
    assert seed == [("13807", "BPGO", "B.P Grand Ouest"), ("13807", "CMMGO", "CMM Grand Ouest")]
    assert set(banks[0]) == {"bank_code", "name", "short_name", "network", "capabilities"}
    assert {b["network"] for b in banks} == {"banque_populaire", "caisse_epargne", "other"}


def test_routes_of_later_issues_answer_501_problem_json(load_event, lambda_context):
    # Given a POST /v1/connections event (the connect journey is not built yet)
    event = load_event("connect/list_banks.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/connections"
    event["requestContext"]["http"]["method"] = "POST"

    # When the handler runs
    response = app.lambda_handler(event, lambda_context)

    # Then it says so plainly with the stable error model
    assert response["statusCode"] == 501
    assert response["headers"]["Content-Type"] == "application/problem+json"
    body = json.loads(response["body"])
    assert body["code"] == "not_implemented"
    assert body["request_id"] == event["requestContext"]["requestId"]


def test_unknown_route_is_404(load_event, lambda_context):
    event = load_event("connect/list_banks.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/nowhere"

    response = app.lambda_handler(event, lambda_context)

    assert response["statusCode"] == 404
