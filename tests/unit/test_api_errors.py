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
    "unsigned": errors.BankSignatureInvalidError("bank response failed its signature check", status=200),
    "not_here": errors.BankNotImplementedError("bank does not provide this resource", status=501, bank_code="13807"),
    "config": errors.ConfigurationError("invalid environment configuration: TOKEN_KEY_ID: missing"),
    "cursor": errors.InvalidCursorError("expired"),
    "no_consent": errors.ConsentRequiredError("no consent was submitted for this connection"),
    "not_consented": errors.ConsentRejectedError("the consent in force does not cover this data"),
    "no_account": errors.AccountNotFoundError("the bank knows no such account"),
    "no_connection": errors.ConnectionNotFoundError("connection not found"),
    "unsupported": errors.BankFeatureNotSupportedError("this bank does not offer this feature"),
    "key_reused": errors.IdempotencyKeyReusedError("this Idempotency-Key was used with a different request"),
    "in_progress": errors.RequestInProgressError("a request with this Idempotency-Key is in progress"),
    "quota": errors.BankRateLimitedError("bank rate limit reached", status=429, bank_code="13807"),
    "boom": RuntimeError("access_token=eyJsecret in an unexpected place"),
    "ddb_throttled": errors.PersistenceError("DynamoDB throttled", details={"error_type": "ThrottlingException"}),
    # KMS details carry an error_type of their own: logging them must not collide with ours
    "kms_down": errors.KeyServiceError("KMS could not decrypt a data key", details={"error_type": "KMSInternal"}),
    "lease_held": errors.RefreshInProgressError("another refresh holds the lease"),
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
        ("unsigned", 502, "bank_signature_invalid"),
        ("not_here", 501, "bank_feature_not_supported"),
        ("config", 500, "internal_error"),
        ("cursor", 400, "validation_error"),
        ("no_consent", 403, "consent_required"),
        ("not_consented", 403, "account_not_consented"),
        ("no_account", 404, "account_not_found"),
        ("no_connection", 404, "connection_not_found"),
        ("unsupported", 501, "bank_feature_not_supported"),
        ("key_reused", 422, "idempotency_key_reused"),
        ("in_progress", 409, "request_in_progress"),
        ("quota", 429, "bank_rate_limited"),
        ("boom", 500, "internal_error"),
        ("ddb_throttled", 503, "service_unavailable"),
        ("kms_down", 503, "service_unavailable"),
        ("lease_held", 409, "conflict"),
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
    # and the request id in a header too, as on every answer (aisp.api.headers)
    assert response["headers"]["X-Request-ID"] == "req-get-v1-banks"
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


def test_a_rate_limit_without_retry_after_gets_the_default(resolver, load_event, lambda_context):
    response = _call(resolver, load_event, lambda_context, "/raise/quota")
    assert response["headers"]["Retry-After"] == "60"


def test_an_invalid_cursor_says_so_in_detail_and_field(resolver, load_event, lambda_context):
    body = json.loads(_call(resolver, load_event, lambda_context, "/raise/cursor")["body"])

    assert body["detail"] == "invalid_cursor"
    assert body["errors"] == [{"field": "cursor", "message": "invalid_cursor"}]
    assert "expired" not in json.dumps(body)  # the reason is for the logs


def test_a_request_in_progress_says_when_to_retry(resolver, load_event, lambda_context):
    response = _call(resolver, load_event, lambda_context, "/raise/in_progress")
    assert response["headers"]["Retry-After"] == "1"


def test_a_refresh_held_elsewhere_says_when_to_retry(resolver, load_event, lambda_context):
    response = _call(resolver, load_event, lambda_context, "/raise/lease_held")
    assert response["headers"]["Retry-After"] == "5"
