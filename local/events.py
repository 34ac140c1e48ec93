"""API Gateway HTTP API payload 2.0: route matching, the event a function receives and what its answer becomes.

Pure functions, no sockets: :mod:`local.adapter` feeds them the bytes it read and writes back what they return.
The shapes follow the HTTP API developer guide ("Working with AWS Lambda proxy integrations for HTTP APIs") and
what the deployed API sends (``events/connect/list_banks.json`` was generated from it):

* header names lower-cased, repeated headers joined with commas; cookies moved out of the headers into ``cookies``;
* ``queryStringParameters`` decoded, repeated keys joined with commas; absent when there is no query string;
* ``pathParameters`` decoded, absent when the route has none;
* text bodies as is, anything else base64 with ``isBase64Encoded: true``;
* a response without ``statusCode`` is taken as a JSON body with status 200 ("inferred" format).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from local.template import ACCOUNT_ID, Route

API_ID: Final = "local"
TEXT_MEDIA_TYPES: Final = frozenset({"application/json", "application/javascript", "application/xml"})
# Matched against text/plain by default, like API Gateway, when a function answers without a content type.
DEFAULT_RESPONSE_CONTENT_TYPE: Final = "text/plain; charset=utf-8"
HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer", "content-length"}
)
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class InvalidResponseError(Exception):
    """A function returned something API Gateway would refuse (it answers 500 then)."""


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """A request as read from the socket: raw path and query, headers in arrival order, body bytes."""

    method: str
    raw_path: str
    raw_query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"
    server_port: int = 0

    def header(self, name: str) -> str | None:
        """All values of header ``name`` (case-insensitive) joined by commas, or ``None``."""
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ",".join(values) if values else None


@dataclass(slots=True)
class HttpResponse:
    """What goes back on the socket."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def gateway_message(status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> HttpResponse:
    """API Gateway's own answers: ``{"message": "Not Found"}`` and the like."""
    body = json.dumps({"message": message}).encode()
    return HttpResponse(status, [("content-type", "application/json"), *headers], body)


def _segments(path: str) -> list[str]:
    return path.split("/")[1:]


def _specificity(route: Route) -> tuple[tuple[int, ...], int, int]:
    """Higher wins: static segments over ``{param}`` over ``{proxy+}``, left to right; a method over ``ANY``."""
    if route.path == "$default":
        return ((-1,), 0, 0)
    ranks = tuple(
        0 if segment.endswith("+}") else 1 if segment.startswith("{") else 2 for segment in _segments(route.path)
    )
    return (ranks, len(ranks), 0 if route.method == "ANY" else 1)


def _match_path(template: str, raw_path: str) -> dict[str, str] | None:
    if template == "$default":
        return {}
    wanted, actual = _segments(template), _segments(raw_path)
    greedy = bool(wanted) and wanted[-1].startswith("{") and wanted[-1].endswith("+}")
    fixed = wanted[:-1] if greedy else wanted
    rest = actual[len(fixed) :]
    if len(actual) < len(fixed) or (greedy and (not rest or rest == [""])) or (not greedy and rest):
        return None
    params: dict[str, str] = {}
    for segment, value in zip(fixed, actual, strict=False):
        if segment.startswith("{") and segment.endswith("}"):
            if not value:
                return None
            params[segment[1:-1]] = unquote(value)
        elif segment != value:
            return None
    if greedy:
        params[wanted[-1][1:-2]] = unquote("/".join(rest))
    return params


def match_route(routes: Sequence[Route], method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
    """The most specific route for ``method`` and ``raw_path`` and its decoded path parameters, or ``None``."""
    candidates: list[tuple[Route, dict[str, str]]] = []
    for route in routes:
        if route.method not in {"ANY", method.upper()}:
            continue
        params = _match_path(route.path, raw_path)
        if params is not None:
            candidates.append((route, params))
    if not candidates:
        return None
    return max(candidates, key=lambda candidate: _specificity(candidate[0]))


def _is_text(content_type: str | None) -> bool:
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type.startswith("text/") or media_type in TEXT_MEDIA_TYPES or media_type.endswith(("+json", "+xml"))


def _request_time(epoch: float) -> str:
    moment = time.gmtime(epoch)
    return (
        f"{moment.tm_mday:02d}/{_MONTHS[moment.tm_mon - 1]}/{moment.tm_year}:"
        f"{moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d} +0000"
    )


def event_headers(request: IncomingRequest) -> tuple[dict[str, str], list[str]]:
    """Lower-cased headers (repeats joined by commas) with API Gateway's ``x-forwarded-*``, and the cookies."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    forwarded = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = f"{forwarded}, {request.source_ip}" if forwarded else request.source_ip
    headers["x-forwarded-port"] = str(request.server_port)
    headers["x-forwarded-proto"] = "http"
    return headers, cookies


def query_parameters(raw_query: str) -> dict[str, str]:
    """Decoded query parameters, repeated keys joined by commas (``a=1&a=2`` → ``{"a": "1,2"}``)."""
    params: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    return params


def build_event(
    request: IncomingRequest,
    route: Route,
    path_parameters: Mapping[str, str],
    *,
    request_id: str,
    jwt: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The payload 2.0 event for ``request`` matched to ``route``.

    Parameters
    ----------
    request
        What was read from the socket.
    route
        The matched route (its ``routeKey`` goes in the event).
    path_parameters
        Decoded values of the route's ``{name}`` segments.
    request_id
        Unique per request (``requestContext.requestId``, also the ``apigw-requestid`` response header).
    jwt
        ``{"claims": {...}, "scopes": [...]}`` when the route's JWT authorizer accepted the request.
    now
        Request time (epoch seconds); defaults to the current time.
    """
    epoch = time.time() if now is None else now
    headers, cookies = event_headers(request)
    host = urlsplit("//" + headers.get("host", "")).hostname or "127.0.0.1"
    request_context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": host,
        "domainPrefix": host.split(".", 1)[0],
        "http": {
            "method": request.method,
            "path": request.raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route.route_key,
        "stage": "$default",
        "time": _request_time(epoch),
        "timeEpoch": int(epoch * 1000),
    }
    if jwt is not None:
        request_context["authorizer"] = {"jwt": dict(jwt)}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if request.raw_query:
        event["queryStringParameters"] = query_parameters(request.raw_query)
    event["requestContext"] = request_context
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if request.body:
        text = None
        if _is_text(headers.get("content-type")):
            try:
                text = request.body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        event["body"] = text if text is not None else base64.b64encode(request.body).decode("ascii")
        event["isBase64Encoded"] = text is None
    else:
        event["isBase64Encoded"] = False
    return event


def _header_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise InvalidResponseError(f"{where} must be a string")


def _response_headers(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name), _header_value(value, f"headers.{name}")))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        if not isinstance(values, list):
            raise InvalidResponseError(f"multiValueHeaders.{name} must be a list")
        headers.extend((str(name), _header_value(v, f"multiValueHeaders.{name}")) for v in values)
    cookies = result.get("cookies") or []
    if not isinstance(cookies, list):
        raise InvalidResponseError("cookies must be a list")
    headers.extend(("set-cookie", _header_value(cookie, "cookies[]")) for cookie in cookies)
    headers = [(name, value) for name, value in headers if name.lower() not in HOP_BY_HOP]
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("content-type", DEFAULT_RESPONSE_CONTENT_TYPE))
    return headers


def _response_body(result: Mapping[str, Any]) -> bytes:
    body = result.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise InvalidResponseError("body must be a string")
    if not result.get("isBase64Encoded"):
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error:
        raise InvalidResponseError("body is not valid base64 although isBase64Encoded is true") from None


def _structured_response(result: Mapping[str, Any]) -> HttpResponse:
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:  # noqa: PLR2004
        raise InvalidResponseError("statusCode must be an integer HTTP status")
    return HttpResponse(status, _response_headers(result), _response_body(result))


def response_from_result(result: Any) -> HttpResponse:
    """Turn a handler's return value into the HTTP response, as API Gateway does for payload 2.0.

    Raises
    ------
    InvalidResponseError
        The value has a ``statusCode`` but a malformed shape (API Gateway then answers 500).
    """
    if isinstance(result, Mapping) and "statusCode" in result:
        return _structured_response(result)
    # "Inferred" format: any JSON value without statusCode is a 200 JSON body.
    body = json.dumps(result).encode()
    return HttpResponse(200, [("content-type", "application/json")], body)
