"""The adapter builds API Gateway HTTP API payload 2.0 events and maps responses back, over real HTTP."""

from __future__ import annotations

import base64
import http.client
import json
import re
import time
from urllib.parse import urlsplit

import pytest
import requests

from tests.e2e.conftest import AUDIENCE, ISSUER

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

TIMEOUT = 10


def _raw_request(url: str, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b""):
    """http.client, because requests cannot send a header twice."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


def test_event_has_every_payload_v2_field(echo_api):
    # Given a token and a request with repeated headers, repeated query keys, cookies and a JSON body
    token = echo_api.issuer.issue("marc", extra_claims={"scope": "accounts.read profile", "amr": ["pwd", "otp"]})
    headers = [
        ("Authorization", f"Bearer {token}"),
        ("X-Repeated", "one"),
        ("X-Repeated", "two"),
        ("Cookie", "a=1; b=2"),
        ("User-Agent", "e2e-test/1.0"),
        ("Content-Type", "application/json"),
    ]
    before = time.time()

    # When it reaches a route with a path parameter
    status, response_headers, body = _raw_request(
        echo_api.url, "POST", "/items/it%20em?tag=a&tag=b&q=x%2By&empty=", headers, b'{"k": "v"}'
    )

    # Then the function saw a payload 2.0 event
    assert status == 201
    echoed = json.loads(body)
    event = echoed["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /items/{item_id}"
    assert event["rawPath"] == "/items/it%20em"
    assert event["rawQueryString"] == "tag=a&tag=b&q=x%2By&empty="
    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-repeated"] == "one,two"
    assert event["headers"]["user-agent"] == "e2e-test/1.0"
    assert event["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert event["headers"]["x-forwarded-proto"] == "http"
    assert event["headers"]["x-forwarded-port"] == str(echo_api.server.port)
    assert all(name == name.lower() for name in event["headers"])
    assert event["queryStringParameters"] == {"tag": "a,b", "q": "x+y", "empty": ""}
    assert event["pathParameters"] == {"item_id": "it em"}
    assert event["body"] == '{"k": "v"}'
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["accountId"] == "123456789012"
    assert context["apiId"] == "local"
    assert context["domainName"] == "127.0.0.1"
    assert context["domainPrefix"] == "127"
    assert context["http"] == {
        "method": "POST",
        "path": "/items/it%20em",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "e2e-test/1.0",
    }
    assert context["routeKey"] == "POST /items/{item_id}"
    assert context["stage"] == "$default"
    assert re.fullmatch(r"\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000", context["time"])
    assert before * 1000 - 1000 <= context["timeEpoch"] <= time.time() * 1000
    assert context["requestId"] == dict(response_headers)["apigw-requestid"]
    claims = context["authorizer"]["jwt"]["claims"]
    assert claims["sub"] == "marc"
    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE
    assert claims["amr"] == "[pwd otp]"
    assert all(isinstance(value, str) for value in claims.values())
    assert int(claims["exp"]) > int(claims["iat"])
    assert context["authorizer"]["jwt"]["scopes"] == ["accounts.read", "profile"]
    # ...and a Lambda-like context from the template (Globals: MemorySize 256, Timeout 7, Environment)
    assert echoed["context"]["function_name"] == "aisp-gateway-local-EchoFunction"
    assert echoed["context"]["memory_limit_in_mb"] == 256
    assert 0 < echoed["context"]["remaining_ms"] <= 7000
    assert echoed["greeting"] == "hello from eu-west-3"


def test_request_ids_are_unique(echo_api):
    # Given two identical requests
    def request_id() -> str:
        response = requests.get(f"{echo_api.url}/open", timeout=TIMEOUT)
        return response.json()["event"]["requestContext"]["requestId"]

    # When / Then
    assert request_id() != request_id()


def test_binary_body_is_base64_encoded(echo_api):
    # Given a body that is not text
    payload = bytes(range(256))

    # When it is posted
    response = requests.post(
        f"{echo_api.url}/files/a/b%20c.bin",
        data=payload,
        headers={"Authorization": f"Bearer {echo_api.issuer.issue('marc')}", "Content-Type": "application/pdf"},
        timeout=TIMEOUT,
    )

    # Then the function gets it base64-encoded, and the greedy path parameter decoded
    event = response.json()["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload
    assert event["routeKey"] == "ANY /files/{proxy+}"
    assert event["pathParameters"] == {"proxy": "a/b c.bin"}


def test_request_without_query_or_body_omits_those_fields(echo_api):
    # When a bare GET reaches an open route
    event = requests.get(f"{echo_api.url}/open", timeout=TIMEOUT).json()["event"]

    # Then the optional fields are absent, as with API Gateway
    for absent in ("queryStringParameters", "pathParameters", "body", "cookies"):
        assert absent not in event
    assert event["isBase64Encoded"] is False
    assert "authorizer" not in event["requestContext"]


def test_response_headers_cookies_and_status_are_returned(echo_api):
    # When the function answers with headers, multi-value headers and cookies
    status, headers, _ = _raw_request(echo_api.url, "GET", "/open", [])

    # Then each reaches the client
    assert status == 200
    assert ("x-single", "one") in headers
    assert [value for name, value in headers if name == "x-multi"] == ["a", "b"]
    assert [value for name, value in headers if name.lower() == "set-cookie"] == [
        "session=abc; Path=/; HttpOnly",
        "theme=dark",
    ]


def test_base64_response_is_decoded(echo_api):
    # When the function answers isBase64Encoded
    response = requests.get(f"{echo_api.url}/binary", timeout=TIMEOUT)

    # Then the client gets the bytes
    assert response.content == b"\x00\x01\xfe\xff"
    assert response.headers["content-type"] == "application/octet-stream"


def test_result_without_status_code_is_a_json_200(echo_api):
    response = requests.get(f"{echo_api.url}/inferred", timeout=TIMEOUT)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"hello": "world"}


@pytest.mark.parametrize("path", ["/boom", "/malformed"])
def test_handler_failure_is_a_gateway_500(echo_api, path):
    # When the function raises or answers a malformed response
    response = requests.get(f"{echo_api.url}{path}", timeout=TIMEOUT)

    # Then the client gets API Gateway's own 500
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
    assert response.headers["apigw-requestid"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nowhere"), ("DELETE", "/items/1"), ("GET", "/items/1/extra"), ("GET", "/files"), ("GET", "/open/")],
)
def test_unknown_route_is_404(echo_api, method, path):
    response = requests.request(method, f"{echo_api.url}{path}", timeout=TIMEOUT)

    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_static_segment_wins_over_a_path_parameter(echo_api):
    # Given GET /items/special and GET /items/{item_id}
    token = echo_api.issuer.issue("marc")

    # When /items/special is requested
    event = requests.get(
        f"{echo_api.url}/items/special", headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT
    ).json()["event"]

    # Then the most specific route wins
    assert event["routeKey"] == "GET /items/special"
    assert "pathParameters" not in event


@pytest.mark.parametrize(
    ("request_line", "status", "message"),
    [
        (b"GARBAGE", 400, "Bad Request"),
        (b"\x16\x03\x01\x02\x00", 400, "Bad Request"),  # a TLS hello on the plain-HTTP port
        (b"GET / HTTP/9.9", 505, "HTTP Version Not Supported"),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1", 414, "URI Too Long"),
    ],
)
def test_a_malformed_request_line_gets_a_gateway_answer_not_a_crash(echo_api, capfd, request_line, status, message):
    import socket

    # When a client sends a request line the HTTP parser refuses
    with socket.create_connection(("127.0.0.1", echo_api.server.port), timeout=5) as raw:
        raw.sendall(request_line + b"\r\nHost: x\r\n\r\n")
        raw.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk

    # Then it gets an HTTP answer in API Gateway's shape, and no handler thread failed
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    assert json.loads(body) == {"message": message}
    assert "Traceback" not in capfd.readouterr().err
