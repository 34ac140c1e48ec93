"""docs/openapi.json is what the resolvers generate (run `python scripts/export_openapi.py` after changing a route or
model), it is a valid OpenAPI 3.1 document, and it describes exactly the template's HTTP routes."""

from __future__ import annotations

import json

import pytest
from openapi_spec_validator import validate

from scripts import export_openapi


@pytest.fixture(scope="module")
def generated():
    return export_openapi.build_document()


def test_the_committed_document_is_current(generated):
    committed = export_openapi.TARGET.read_text(encoding="utf-8")

    assert committed == export_openapi.render(generated), (
        "docs/openapi.json drifted from the code: run `.venv/bin/python scripts/export_openapi.py` and commit it"
    )


def test_it_is_a_valid_openapi_document(generated):
    validate(json.loads(export_openapi.render(generated)))


def test_it_documents_exactly_the_template_routes(generated):
    declared = {(method, path) for _, routes in export_openapi.http_functions() for method, path, _ in routes}
    documented = {
        (method.upper(), path) for path, item in generated["paths"].items() for method in item if method != "parameters"
    }

    assert documented == declared
    assert len(declared) == 16


# The reads a server token may make (the fintech's backend, for the user in Aisp-User): every other route is the user's.
SERVER_READS = {
    "listConnections",
    "getConnection",
    "listAllAccounts",
    "listAccounts",
    "getBalances",
    "listTransactions",
    "listTrustedBeneficiaries",
    "getIdentity",
    "getQuota",
    "syncTransactions",
}


def test_security_is_the_users_jwt_everywhere_a_server_token_on_reads_none_on_the_callback(generated):
    assert generated["security"] == [{"bearerAuth": []}]
    schemes = generated["components"]["securitySchemes"]
    assert {name: scheme["bearerFormat"] for name, scheme in schemes.items()} == {
        "bearerAuth": "JWT",
        "serverToken": "JWT",
    }
    assert "aisp/unattended" in schemes["serverToken"]["description"]
    own = {
        op["operationId"]: op.get("security")
        for item in generated["paths"].values()
        for op in item.values()
        if "security" in op
    }
    assert own == {
        "oauthCallback": [],
        **dict.fromkeys(SERVER_READS, [{"bearerAuth": []}, {"serverToken": []}]),
    }


def test_a_server_read_takes_aisp_user_and_answers_with_the_ratelimit_fields(generated):
    for item in generated["paths"].values():
        for op in item.values():
            names = {parameter["name"] for parameter in op.get("parameters", [])}
            assert ("Aisp-User" in names) == (op["operationId"] in SERVER_READS), op["operationId"]
            limits = {"RateLimit", "RateLimit-Policy"} <= set(op["responses"].get("200", {}).get("headers", {}))
            assert limits == (op["operationId"] in SERVER_READS), op["operationId"]


OPERATIONS = {
    ("GET", "/v1/banks"): ("listBanks", "banks"),
    ("POST", "/v1/connections"): ("createConnection", "connections"),
    ("GET", "/v1/connections"): ("listConnections", "connections"),
    ("GET", "/v1/connections/{bank_code}"): ("getConnection", "connections"),
    ("POST", "/v1/connections/{bank_code}/complete"): ("completeConnection", "connections"),
    ("DELETE", "/v1/connections/{bank_code}"): ("deleteConnection", "connections"),
    ("GET", "/oauth/callback"): ("oauthCallback", "connections"),
    ("PUT", "/v1/connections/{bank_code}/consent"): ("submitConsent", "consents"),
    ("GET", "/v1/connections/{bank_code}/accounts"): ("listAccounts", "accounts"),
    ("GET", "/v1/connections/{bank_code}/accounts/{account_id}/balances"): ("getBalances", "accounts"),
    ("GET", "/v1/connections/{bank_code}/accounts/{account_id}/transactions"): ("listTransactions", "accounts"),
    ("GET", "/v1/connections/{bank_code}/trusted-beneficiaries"): ("listTrustedBeneficiaries", "accounts"),
    ("GET", "/v1/connections/{bank_code}/identity"): ("getIdentity", "accounts"),
    ("GET", "/v1/accounts"): ("listAllAccounts", "accounts"),
    ("GET", "/v1/connections/{bank_code}/quota"): ("getQuota", "quota"),
    ("GET", "/v1/connections/{bank_code}/transactions/sync"): ("syncTransactions", "sync"),
}
PROBLEM = {"$ref": "#/components/schemas/Problem"}
EITHER = {"$ref": "#/components/schemas/ErrorResponse"}


def _operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def _resolve(document, schema):
    ref = schema.get("$ref", "")
    return document["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def test_operations_have_chosen_ids_and_the_readmes_groups(generated):
    found = {(method, path): (op["operationId"], op["tags"]) for method, path, op in _operations(generated)}

    assert found == {key: (operation_id, [tag]) for key, (operation_id, tag) in OPERATIONS.items()}
    assert [tag["name"] for tag in generated["tags"]] == [
        "banks",
        "connections",
        "consents",
        "accounts",
        "sync",
        "quota",
    ]
    assert all(tag["description"] for tag in generated["tags"])


def test_errors_say_what_each_status_really_carries(generated):
    # Given the statuses API Gateway answers by itself, as {"message": ...} in application/json
    gateway = {"401", "404", "429", "503"}
    for method, path, operation in _operations(generated):
        responses = operation["responses"]
        # Then every operation has the default answer (ours or the gateway's), and every JWT route its 401
        assert responses["default"]["content"] == {
            "application/problem+json": {"schema": EITHER},
            "application/json": {"schema": EITHER},
        }, (method, path)
        if path != "/oauth/callback":
            assert "401" in responses, (method, path)
        for status, response in responses.items():
            if status == "default" or int(status) < 400 or path == "/oauth/callback":
                continue
            # And a status the gateway can give is either shape; any other is a problem document only
            expected = (
                {"application/problem+json": {"schema": EITHER}, "application/json": {"schema": EITHER}}
                if status in gateway
                else {"application/problem+json": {"schema": PROBLEM}}
            )
            assert response["content"] == expected, (method, path, status)
    assert "HTTPValidationError" not in generated["components"]["schemas"]
    schemas = generated["components"]["schemas"]
    assert schemas["ErrorResponse"]["anyOf"] == [PROBLEM, {"$ref": "#/components/schemas/GatewayError"}]
    assert schemas["GatewayError"]["required"] == ["message"]
    assert schemas["Problem"]["required"] == ["type", "title", "status", "code"]
    assert schemas["Problem"]["properties"]["errors"] == {
        "items": {"$ref": "#/components/schemas/FieldError"},
        "type": "array",
        "title": "Errors",
        "description": "validation_error: every invalid field",
    }
    assert schemas["FieldError"]["required"] == ["field", "message"]


def _reachable(document, schema, seen):
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if ref:
            name = ref.rsplit("/", 1)[1]
            if name not in seen:
                seen.add(name)
                _reachable(document, document["components"]["schemas"][name], seen)
        for value in schema.values():
            _reachable(document, value, seen)
    elif isinstance(schema, list):
        for value in schema:
            _reachable(document, value, seen)
    return seen


def test_every_answer_is_an_object_whose_fields_are_always_sent(generated):
    answers: set[str] = set()
    for method, path, operation in _operations(generated):
        for status, response in operation["responses"].items():
            if status.startswith("2") and "application/json" in response.get("content", {}):
                schema = response["content"]["application/json"]["schema"]
                # Then no answer is a bare list
                assert _resolve(generated, schema).get("type") == "object", (method, path)
                _reachable(generated, schema, answers)
    # And in every model an answer reaches, every field is required: sent, null when it has no value
    for name in sorted(answers):
        schema = generated["components"]["schemas"][name]
        if "properties" in schema:
            assert sorted(schema.get("required", [])) == sorted(schema["properties"]), name
    assert "AccountItem" in answers and "ConsentSnapshot" in answers and "BankCapabilities" in answers
    account_id = generated["components"]["schemas"]["AccountItem"]["properties"]["account_id"]
    assert account_id["type"] == "string"


def test_transactions_say_whether_more_follow(generated):
    page = generated["components"]["schemas"]["TransactionsResponse"]

    assert page["properties"]["has_more"]["type"] == "boolean"
    assert page["properties"]["next_cursor"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert "null" in page["properties"]["next_cursor"]["description"]


def test_enum_values_are_lower_snake_case(generated):
    enums = {name: schema["enum"] for name, schema in generated["components"]["schemas"].items() if "enum" in schema}
    inline = [
        prop["enum"]
        for schema in generated["components"]["schemas"].values()
        for prop in schema.get("properties", {}).values()
        if "enum" in prop
    ]

    assert enums["ConnectionStatus"] == ["pending", "authorized", "active", "reauth_required", "failed", "revoked"]
    assert len(enums) + len(inline) >= 5  # statuses, reasons, networks, transaction status, credit/debit
    for values in [*enums.values(), *inline]:
        assert all(value == value.lower() and " " not in value for value in values), values


def test_optional_parameters_are_never_null_and_headers_are_spelled_as_sent(generated):
    for method, path, operation in _operations(generated):
        for parameter in operation.get("parameters", []):
            # Then no parameter offers null: a client leaves an optional one out
            assert "anyOf" not in parameter["schema"], (method, path, parameter["name"])
            assert parameter["schema"].get("type") != "null"
    for method, path in (("post", "/v1/connections"), ("put", "/v1/connections/{bank_code}/consent")):
        (header,) = [p for p in generated["paths"][path][method]["parameters"] if p["in"] == "header"]
        assert (header["name"], header["required"]) == ("Idempotency-Key", False)
        assert header["schema"]["pattern"] == "^[!-~]+$"
        assert "422" in generated["paths"][path][method]["responses"]


def test_title_version_license_contact_and_rate_limit_header(generated):
    assert generated["info"]["title"] == "BPCE AISP gateway API"
    assert generated["info"]["version"]
    assert generated["info"]["license"] == {"name": "Proprietary", "identifier": "LicenseRef-Proprietary"}
    assert generated["info"]["contact"]["name"]
    balances = generated["paths"]["/v1/connections/{bank_code}/accounts/{account_id}/balances"]["get"]
    assert "Retry-After" in balances["responses"]["429"]["headers"]
