"""ConnectFunction handler, invoked with the events/ payloads (the in-memory stack, a fake bank via the factories)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from aisp.models.connection import ConnectionStatus
from functions.connect import app

KEY = "0b6f8f9e-3c1d-4f7a-9d55-6a1e2f3b4c5d"


def test_list_banks_returns_the_registry_with_the_seed_sandbox_banks(gateway_env, load_event, lambda_context):
    # Given the GET /v1/banks event of an authenticated user
    event = load_event("connect/list_banks.json")

    # When the handler runs
    response = app.lambda_handler(event, lambda_context)

    # Then it answers 200 with every establishment, the seed's two 13807 brands included
    assert response["statusCode"] == 200
    banks = json.loads(response["body"])["banks"]
    seed = [(b["bank_code"], b["short_name"], b["name"]) for b in banks if b["bank_code"] == "13807"]
    assert seed == [("13807", "BPGO", "B.P Grand Ouest"), ("13807", "CMMGO", "CMM Grand Ouest")]
    assert set(banks[0]) == {"bank_code", "name", "short_name", "network", "capabilities"}
    assert {b["network"] for b in banks} == {"banque_populaire", "caisse_epargne", "other"}


def test_unknown_route_is_404(load_event, lambda_context):
    event = load_event("connect/list_banks.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/nowhere"

    response = app.lambda_handler(event, lambda_context)

    assert response["statusCode"] == 404


def _body(response):
    return json.loads(response["body"])


def test_create_connection_answers_201_with_the_login_link(wired, load_event, lambda_context, bank):
    # Given Marc's POST /v1/connections
    event = load_event("connect/create_connection.json")

    # When the handler runs
    response = app.lambda_handler(event, lambda_context)

    # Then 201 with the contract's fields, and the login link carries our callback derived from the API domain
    assert response["statusCode"] == 201
    assert response["headers"]["Cache-Control"] == "no-store"
    body = _body(response)
    assert set(body) == {"connection_id", "bank_code", "authorization_url", "expires_at"}
    assert body["bank_code"] == "13807"
    query = parse_qs(urlsplit(body["authorization_url"]).query)
    assert query["redirect_uri"] == ["https://api-id.execute-api.eu-west-3.amazonaws.com/oauth/callback"]
    connection = wired.connections.find("user-marc", "13807")
    assert connection.connection_id == body["connection_id"]
    assert connection.status is ConnectionStatus.PENDING


@pytest.mark.parametrize(
    ("event_name", "status", "code"),
    [
        ("connect/create_connection_bad_return_url.json", 400, "validation_error"),
        ("connect/create_connection_invalid_body.json", 400, "validation_error"),
        ("connect/create_connection_unknown_bank.json", 404, "bank_not_found"),
        ("connect/list_connections_no_jwt.json", 401, "unauthenticated"),
    ],
)
def test_refusals_are_problem_json_with_a_stable_code(wired, load_event, lambda_context, event_name, status, code):
    response = app.lambda_handler(load_event(event_name), lambda_context)

    assert response["statusCode"] == status
    assert response["headers"]["Content-Type"] == "application/problem+json"
    assert _body(response)["code"] == code
    assert wired.connections.list_for_user("user-marc") == []


def test_an_invalid_body_names_the_fields_without_echoing_values(wired, load_event, lambda_context):
    response = app.lambda_handler(load_event("connect/create_connection_invalid_body.json"), lambda_context)

    body = _body(response)
    assert {error["field"] for error in body["errors"]} == {"body.bank_code", "body.user_id"}
    assert "someone-else" not in response["body"] and "13807-BPGO" not in response["body"]


def test_a_post_without_jwt_is_401(wired, load_event, lambda_context):
    event = load_event("connect/create_connection.json")
    del event["requestContext"]["authorizer"]

    response = app.lambda_handler(event, lambda_context)

    assert response["statusCode"] == 401
    assert _body(response)["code"] == "unauthenticated"


def test_list_connections_shows_the_users_connections(wired, load_event, lambda_context):
    # Given a started connection
    app.lambda_handler(load_event("connect/create_connection.json"), lambda_context)

    # When Marc lists his connections
    response = app.lambda_handler(load_event("connect/list_connections.json"), lambda_context)

    # Then he sees it, pending, with the contract's fields
    assert response["statusCode"] == 200
    (listed,) = _body(response)["connections"]
    assert listed["status"] == "pending" and listed["bank_code"] == "13807"
    assert set(listed) == {
        "connection_id",
        "bank_code",
        "status",
        "status_reason",
        "connected_at",
        "access_expires_at",
        "reauth_due_at",
        "consent",
    }


def test_delete_connection_answers_204_then_404_for_someone_else(wired, load_event, lambda_context):
    app.lambda_handler(load_event("connect/create_connection.json"), lambda_context)

    # Another user cannot delete Marc's connection: to them it does not exist
    as_eve = load_event("connect/delete_connection.json")
    as_eve["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "user-eve"
    refused = app.lambda_handler(as_eve, lambda_context)
    assert refused["statusCode"] == 404
    assert _body(refused)["code"] == "connection_not_found"
    assert wired.connections.find("user-marc", "13807").status is ConnectionStatus.PENDING

    # Marc can
    response = app.lambda_handler(load_event("connect/delete_connection.json"), lambda_context)
    assert response["statusCode"] == 204
    assert not response.get("body")
    assert wired.connections.find("user-marc", "13807").status is ConnectionStatus.REVOKED


@pytest.mark.parametrize(
    ("bank_code", "status", "code"), [("1380", 400, "validation_error"), ("99999", 404, "bank_not_found")]
)
def test_delete_validates_the_bank_code(wired, load_event, lambda_context, bank_code, status, code):
    event = load_event("connect/delete_connection.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/v1/connections/{bank_code}"
    event["pathParameters"] = {"bank_code": bank_code}

    response = app.lambda_handler(event, lambda_context)

    assert response["statusCode"] == status
    assert _body(response)["code"] == code


def test_one_connection_is_read_by_its_user_only(wired, load_event, lambda_context):
    # Given no connection yet: 404
    missing = app.lambda_handler(load_event("connect/get_connection.json"), lambda_context)
    assert (missing["statusCode"], _body(missing)["code"]) == (404, "connection_not_found")

    # When Marc starts one, he reads it, without tokens and uncached; another user still gets 404
    app.lambda_handler(load_event("connect/create_connection.json"), lambda_context)
    response = app.lambda_handler(load_event("connect/get_connection.json"), lambda_context)
    as_eve = load_event("connect/get_connection.json")
    as_eve["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "user-eve"

    assert response["statusCode"] == 200
    assert _body(response)["status"] == "pending"
    assert response["headers"]["Cache-Control"] == "no-store"
    assert response["headers"]["X-Content-Type-Options"] == "nosniff"
    assert app.lambda_handler(as_eve, lambda_context)["statusCode"] == 404


def test_a_completion_value_that_activates_nothing_is_400_invalid_completion(wired, load_event, lambda_context):
    response = app.lambda_handler(load_event("connect/complete_connection_unknown.json"), lambda_context)

    assert response["statusCode"] == 400
    problem = _body(response)
    assert problem["code"] == "invalid_completion"
    assert "errors" not in problem  # not a field error: the value is well formed, it just activates nothing
    assert response["headers"]["Content-Type"] == "application/problem+json"
    assert response["headers"]["X-Content-Type-Options"] == "nosniff"


def test_every_answer_says_nosniff_and_the_bank_list_may_be_cached(gateway_env, load_event, lambda_context):
    banks = app.lambda_handler(load_event("connect/list_banks.json"), lambda_context)

    assert banks["headers"]["X-Content-Type-Options"] == "nosniff"
    assert "Cache-Control" not in banks["headers"]  # the registry is no user's data
