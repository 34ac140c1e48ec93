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
    assert len(declared) == 14


def test_security_is_the_jwt_everywhere_but_the_oauth_callback(generated):
    assert generated["security"] == [{"bearerAuth": []}]
    assert generated["components"]["securitySchemes"]["bearerAuth"]["bearerFormat"] == "JWT"
    public = [
        (path, method) for path, item in generated["paths"].items() for method, op in item.items() if "security" in op
    ]
    assert public == [("/oauth/callback", "get")]
    assert generated["paths"]["/oauth/callback"]["get"]["security"] == []


def test_errors_are_problem_documents_and_no_powertools_422_remains(generated):
    for path, item in generated["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                content = response.get("content", {})
                if path != "/oauth/callback" and int(status) >= 400:  # noqa: PLR2004
                    assert list(content) == ["application/problem+json"], (method, path, status)
                    assert content["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert "HTTPValidationError" not in generated["components"]["schemas"]


def test_title_version_and_rate_limit_header(generated):
    assert generated["info"]["title"] == "BPCE AISP gateway API"
    assert generated["info"]["version"]
    balances = generated["paths"]["/v1/connections/{bank_code}/accounts/{account_id}/balances"]["get"]
    assert "Retry-After" in balances["responses"]["429"]["headers"]
    assert "idempotency-key" in [
        p["name"] for p in generated["paths"]["/v1/connections/{bank_code}/consent"]["put"]["parameters"]
    ]
