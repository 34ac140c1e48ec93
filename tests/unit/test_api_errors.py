"""The error model: every gateway error maps to one status and stable code, as problem+json, with no secrets."""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from aisp import errors
from aisp.api import register_error_handlers

RAISED: dict[str, Exception] = {
    "invalid": errors.InvalidRequestError("bank_code must be 5 digits"),
    "missing": errors.NotFoundError("connection not found"),
    "reauth": errors.ReauthRequiredError("refresh token rejected", status=400, bank_code="13807"),
    "conflict": errors.ConflictError("version changed"),
    "throttled": errors.BankRateLimitedError("bank throttled", retry_after=120, status=429, bank_code="13807"),
    "denied": errors.BankAccessDeniedError("not consented", status=403, bank_code="13807"),
    "down": errors.BankUnavailableError("bank unavailable", status=503, bank_code="13807"),
    "garbled": errors.BankProtocolError("bank body not understood", status=200, bank_code="13807"),
    "config": errors.ConfigurationError("invalid environment configuration: TOKEN_KEY_ID: missing"),
    "boom": RuntimeError("access_token=eyJsecret in an unexpected place"),
}


@pytest.fixture(scope="module")
def resolver() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)
    register_error_handlers(app)

    @app.get("/raise/<kind>")
    def raise_kind(kind: str) -> dict[str, str]:
        raise RAISED[kind]

    @app.get("/typed")
    def typed(limit: int) -> dict[str, int]:
        return {"limit": limit}

    return app


def _call(app, load_event, lambda_context, path, query=None):
    event = load_event("connect/list_banks.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["queryStringParameters"] = query or {}
    return app.resolve(event, lambda_context)


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("invalid", 400, "validation_error"),
        ("missing", 404, "not_found"),
        ("reauth", 409, "reauth_required"),
        ("conflict", 409, "conflict"),
        ("throttled", 429, "bank_rate_limited"),
        ("denied", 403, "account_not_consented"),
        ("down", 503, "bank_unavailable"),
        ("garbled", 502, "bank_unavailable"),
        ("config", 500, "internal_error"),
        ("boom", 500, "internal_error"),
    ],
)
def test_each_error_maps_to_its_status_and_code(resolver, load_event, lambda_context, kind, status, code):
    # When a route raises
    response = _call(resolver, load_event, lambda_context, f"/raise/{kind}")

    # Then the client sees the documented problem
    assert response["statusCode"] == status
    assert response["headers"]["Content-Type"] == "application/problem+json"
    assert response["headers"]["Cache-Control"] == "no-store"
    body = json.loads(response["body"])
    assert (body["status"], body["code"], body["type"]) == (status, code, f"urn:aisp-gateway:error:{code}")
    assert body["request_id"] == "req-get-v1-banks"
    # Internal causes stay in the logs
    assert "eyJsecret" not in response["body"]
    assert "TOKEN_KEY_ID" not in response["body"]


def test_rate_limit_carries_retry_after(resolver, load_event, lambda_context):
    response = _call(resolver, load_event, lambda_context, "/raise/throttled")
    assert response["headers"]["Retry-After"] == "120"


def test_validation_errors_name_fields_but_not_values(resolver, load_event, lambda_context):
    response = _call(resolver, load_event, lambda_context, "/typed", {"limit": "FR7613807008043001965405158"})

    assert response["statusCode"] == 400
    body = json.loads(response["body"])
    assert body["code"] == "validation_error"
    assert body["errors"][0]["field"] == "query.limit"
    assert "FR7613807008043001965405158" not in response["body"]


def test_unknown_route_is_a_problem_404(resolver, load_event, lambda_context):
    response = _call(resolver, load_event, lambda_context, "/nowhere")
    assert response["statusCode"] == 404
    assert json.loads(response["body"])["code"] == "not_found"
