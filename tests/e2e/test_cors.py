"""CORS as API Gateway applies an HttpApi's ``CorsConfiguration``: the adapter on a small template (preflights,
headers added and replaced, origins matched) and the real template on the local stack (a page on
``http://localhost:<port>`` calling the API at ``127.0.0.1``)."""

from __future__ import annotations

import pytest
import requests

from local.stack import DEFAULT_TEMPLATE, start_stack
from local.template import CorsConfig, LocalTemplate, Resolver
from tests.e2e.conftest import ECHO_TEMPLATE

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

TIMEOUT = 10
APP = "https://app.example.com"
CORS_SNIPPET = """      CorsConfiguration:
        AllowOrigins: [https://app.example.com, "http://*"]
        AllowMethods: [GET, POST]
        AllowHeaders: [Authorization, Content-Type]
        ExposeHeaders: [Retry-After]
        MaxAge: 300
"""


@pytest.fixture
def cors_api(write_template, serve_template):
    return serve_template(write_template(ECHO_TEMPLATE.replace("      Auth:\n", CORS_SNIPPET + "      Auth:\n", 1)))


def _preflight(url: str, origin: str, method: str = "GET") -> requests.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization",
    }
    return requests.options(url, headers=headers, timeout=TIMEOUT)


def test_a_preflight_is_answered_by_the_gateway_without_route_or_token(cors_api):
    # When a browser on an allowed origin asks before a GET with a token (no OPTIONS route, no token sent)
    answer = _preflight(f"{cors_api.url}/items/1", APP)

    # Then 204 with the configured policy, the origin echoed
    assert answer.status_code == 204 and answer.content == b""
    assert answer.headers["access-control-allow-origin"] == APP
    assert answer.headers["access-control-allow-methods"] == "GET,POST"
    assert answer.headers["access-control-allow-headers"] == "authorization,content-type"
    assert answer.headers["access-control-max-age"] == "300"
    assert "access-control-allow-credentials" not in answer.headers


def test_an_origin_that_is_not_allowed_gets_no_cors_headers(cors_api):
    preflight = _preflight(f"{cors_api.url}/items/1", "https://evil.example.com")
    actual = requests.get(f"{cors_api.url}/open", headers={"Origin": "https://evil.example.com"}, timeout=TIMEOUT)

    assert preflight.status_code == 204
    assert not [name for name in preflight.headers if name.lower().startswith("access-control-")]
    assert actual.status_code == 200
    assert not [name for name in actual.headers if name.lower().startswith("access-control-")]


def test_a_scheme_wildcard_matches_every_origin_of_that_scheme(cors_api):
    assert _preflight(f"{cors_api.url}/open", "http://localhost:3000").headers["access-control-allow-origin"] == (
        "http://localhost:3000"
    )
    assert "access-control-allow-origin" not in _preflight(f"{cors_api.url}/open", "https://other.example").headers


def test_answers_to_an_allowed_origin_carry_the_gateways_headers_even_refusals(cors_api):
    # An answer of the function, and the authorizer's own 401
    ok = requests.get(f"{cors_api.url}/open", headers={"Origin": APP}, timeout=TIMEOUT)
    refused = requests.get(f"{cors_api.url}/items/1", headers={"Origin": APP}, timeout=TIMEOUT)

    for response in (ok, refused):
        assert response.headers["access-control-allow-origin"] == APP
        assert response.headers["access-control-expose-headers"] == "retry-after"
    assert (ok.status_code, refused.status_code) == (200, 401)


def test_without_origin_or_without_a_cors_configuration_nothing_changes(cors_api, echo_api):
    plain = requests.get(f"{cors_api.url}/open", timeout=TIMEOUT)
    not_a_preflight = requests.options(f"{cors_api.url}/open", headers={"Origin": APP}, timeout=TIMEOUT)
    no_cors = _preflight(f"{echo_api.url}/items/1", APP)

    assert "access-control-allow-origin" not in plain.headers
    assert not_a_preflight.status_code == 404  # routed like any request: there is no OPTIONS route
    assert no_cors.status_code == 404 and echo_api.app.cors is None


def _template_cors(**overrides: str) -> CorsConfig | None:
    template = LocalTemplate.load(DEFAULT_TEMPLATE)
    parameters = template.parameter_values({"JwtIssuer": "https://i/", "JwtAudience": "a", **overrides})
    return template.cors(Resolver(template.data, parameters=parameters))


def test_the_template_has_no_cors_until_origins_are_given():
    assert _template_cors() is None
    cors = _template_cors(AllowedOrigins="https://app.example.com,https://admin.example.com")
    assert cors is not None
    assert cors.allow_origins == ("https://app.example.com", "https://admin.example.com")
    assert cors.allow_headers == ("authorization", "content-type", "idempotency-key")
    assert set(cors.allow_methods) == {"GET", "POST", "PUT", "DELETE"}
    assert "apigw-requestid" in cors.expose_headers and "retry-after" in cors.expose_headers
    assert not cors.allow_credentials


def test_the_local_stack_lets_the_page_on_localhost_call_the_api(state_dir):
    with start_stack(
        api_port=0,
        moto_port=0,
        sandbox_port=0,
        sandbox_screens_port=0,
        state_dir=state_dir,
        allowed_origins=["https://app.example.com"],
    ) as stack:
        port = stack.api_url.rsplit(":", 1)[1]
        localhost = f"http://localhost:{port}"
        token = requests.get(f"{localhost}/_local/token", params={"user": "marc"}, timeout=TIMEOUT).json()

        # The page's preflight and its call, as the browser makes them from the other origin
        preflight = _preflight(f"{stack.api_url}/v1/connections", localhost, "GET")
        listed = requests.get(
            f"{stack.api_url}/v1/connections",
            headers={"Origin": localhost, "Authorization": f"Bearer {token['access_token']}"},
            timeout=TIMEOUT,
        )
        extra = _preflight(f"{stack.api_url}/v1/connections", "https://app.example.com", "POST")
        page = requests.get(f"{localhost}/", timeout=TIMEOUT)

    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == localhost
    assert listed.status_code == 200 and listed.headers["access-control-allow-origin"] == localhost
    assert extra.headers["access-control-allow-origin"] == "https://app.example.com"
    policy = page.headers["content-security-policy"]
    assert f"connect-src 'self' http://127.0.0.1:{port}" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["referrer-policy"] == "no-referrer"
