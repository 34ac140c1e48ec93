"""Property-based fuzzing of docs/openapi.json (schemathesis) against the handlers, in process.

A small WSGI shim plays API Gateway: it matches the request to a template.yaml route, builds the payload 2.0 event
(``local.events``, the same code the local stack uses), adds the JWT claims of the fuzzing user (the authorizer
would), and invokes the route's ``lambda_handler``. Behind the handlers: moto and the offline 89C3 sandbox over
HTTPS + mTLS, with that user connected to 13807 as Marc, so that well-formed requests go all the way to the bank.

Every generated request must get no 5xx and a response that the document describes (status code, content type,
headers, body schema). Requests API Gateway itself would not route to a handler (a path parameter containing ``/``
after decoding, for instance) are counted but not checked. Hypothesis runs derandomized (the same cases every run)
and bounded: a few hundred cases, well under a minute.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("schemathesis", reason="schemathesis is not installed: the OpenAPI fuzzing needs it")

import schemathesis  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from local.events import IncomingRequest, build_event, match_route, response_from_result  # noqa: E402
from local.template import Route  # noqa: E402
from scripts.export_openapi import TARGET, http_functions  # noqa: E402
from tests.conftest import FakeLambdaContext  # noqa: E402
from tests.integration.journey import connect_persona  # noqa: E402
from tests.reliability.tally import record  # noqa: E402
from tests.sandbox.helpers import MARC, MARC_ACCOUNTS  # noqa: E402

pytestmark = pytest.mark.integration

SUB = "user-marc"
SOURCE_IP = "203.0.113.10"
NOT_ROUTED = "x-test-not-routed"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Per operation: random cases in each generation mode, and cases on Marc's real bank and account.
RANDOM_CASES = 25
REAL_PATH_CASES = 15
REAL_PATH = {"bank_code": "13807", "account_id": MARC_ACCOUNTS[0]}


class ApiGatewayShim:
    """WSGI → the template route's handler, as API Gateway would invoke it (payload 2.0, JWT claims for ``sub``)."""

    def __init__(self, sub: str) -> None:
        import importlib

        self.sub = sub
        self.routes: list[Route] = []
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.public: set[str] = set()
        for module_name, routes in http_functions():
            self.handlers[module_name] = importlib.import_module(module_name).lambda_handler
            for method, path, needs_jwt in routes:
                route = Route(method=method, path=path, function=module_name, event="", authorizer=None)
                self.routes.append(route)
                if not needs_jwt:
                    self.public.add(route.route_key)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", "/"))
        raw_path = raw_uri.split("?", 1)[0]
        headers = [
            (key[5:].replace("_", "-").lower(), value) for key, value in environ.items() if key.startswith("HTTP_")
        ]
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers.append((key.replace("_", "-").lower(), environ[key]))
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        request = IncomingRequest(
            method=environ["REQUEST_METHOD"],
            raw_path=raw_path,
            raw_query=environ.get("QUERY_STRING", ""),
            headers=tuple(headers),
            body=body,
            source_ip=SOURCE_IP,
        )
        matched = match_route(self.routes, request.method, raw_path)
        if matched is None:  # API Gateway answers this itself; no handler runs
            start_response("404 Not Found", [("Content-Type", "application/json"), (NOT_ROUTED, "1")])
            return [b'{"message":"Not Found"}']
        route, path_parameters = matched
        jwt = None if route.route_key in self.public else {"claims": {"sub": self.sub}, "scopes": []}
        event = build_event(request, route, path_parameters, request_id=str(uuid.uuid4()), jwt=jwt)
        result = self.handlers[route.function](json.loads(json.dumps(event)), FakeLambdaContext())
        response = response_from_result(result)
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", response.headers)
        return [response.body]


@pytest.fixture
def fuzz_target(gateway, load_event, lambda_context, monkeypatch):
    """Marc connected to 13807 through the real journey; idempotency on (its table is in moto)."""
    monkeypatch.delenv("POWERTOOLS_IDEMPOTENCY_DISABLED", raising=False)
    connect_persona(load_event, lambda_context, identifier=MARC, sub=SUB)
    return ApiGatewayShim(SUB)


def _operations(schema: Any) -> list[Any]:
    operations = [result.ok() for result in schema.get_all_operations()]
    # DELETE /v1/connections/{bank_code} on 13807 would end the connection the others explore: run it last.
    return sorted(operations, key=lambda op: (op.method.upper() == "DELETE", op.path, op.method))


def test_the_handlers_honour_the_openapi_document(fuzz_target, capsys):
    schema = schemathesis.openapi.from_path(str(TARGET))
    counts: Counter[str] = Counter()

    def exercise(case: Any) -> None:
        response = case.call(app=fuzz_target)
        if response.headers.get(NOT_ROUTED):
            counts["not routed by API Gateway"] += 1
            return
        # Counted before the checks, so that a 5xx (which fails them) is in the summary too.
        counts[f"{case.operation.method.upper()} {case.operation.path} → {response.status_code}"] += 1
        counts["cases"] += 1
        case.validate_response(response, checks=CHECKS, transport_kwargs={"app": fuzz_target})

    def run(strategy: Any, examples: int) -> None:
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def property_holds(case: Any) -> None:
            exercise(case)

        property_holds()

    for operation in _operations(schema):
        parameters = {p.name for p in operation.path_parameters}
        if parameters:
            fixed = {name: REAL_PATH[name] for name in parameters}
            run(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=fixed), REAL_PATH_CASES)
        run(operation.as_strategy(GenerationMode.POSITIVE), RANDOM_CASES)
        try:
            run(operation.as_strategy(GenerationMode.NEGATIVE), RANDOM_CASES)
        except Unsatisfiable:  # nothing to make invalid (no parameter, no body): GET /v1/banks, /oauth/callback
            counts["operations without negative cases"] += 1

    summary = f"schemathesis: {counts['cases']} cases checked against docs/openapi.json"
    summary += f" ({counts['not routed by API Gateway']} not routable by API Gateway, skipped)"
    with capsys.disabled():  # the case count is part of the result: always on the terminal
        print(f"\n{summary}")  # noqa: T201
        for key, value in sorted(counts.items()):
            if "→" in key:
                print(f"  {value:4d}  {key}")  # noqa: T201
    server_errors = sum(value for key, value in counts.items() if "→ 5" in key)
    record("schemathesis", cases=counts["cases"], server_errors=server_errors)
    assert counts["cases"] >= 400
