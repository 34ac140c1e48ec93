"""The connected PSU's context from an HTTP API request: source IP from API Gateway, the rest from real headers.

``PSU-IP-Address`` is ``requestContext.http.sourceIp``: the address API Gateway saw, not a header the client could
set. The other ``PSU-*`` values are copied only from headers the user's app actually sent (User-Agent, Accept,
Accept-Charset, Accept-Encoding, Accept-Language, Referer, Date) and the request's own method. Nothing is invented:
no port (API Gateway does not give it), no geolocation, no device id. A value that cannot travel honestly in an
HTTP header (non-ASCII, control characters, longer than :data:`MAX_HEADER_LENGTH`) is left out, never altered.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Final

from aisp.models.psu import PsuInfo
from aisp.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

__all__ = ["MAX_HEADER_LENGTH", "psu_from_event"]

MAX_HEADER_LENGTH: Final = 512
_COPIED: Final = {
    "user_agent": "user-agent",
    "accept": "accept",
    "accept_charset": "accept-charset",
    "accept_encoding": "accept-encoding",
    "accept_language": "accept-language",
    "referer": "referer",
    "date": "date",
}


def _header(headers: dict[str, str], name: str) -> str | None:
    value = next((v for k, v in headers.items() if k.lower() == name), None)
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_HEADER_LENGTH or not value.isascii() or not value.isprintable():
        return None
    return value


def psu_from_event(event: APIGatewayProxyEventV2) -> PsuInfo | None:
    """The PSU context of a user-initiated request, or ``None`` if API Gateway gave no usable source IP."""
    http = event.request_context.http
    source_ip = (http.source_ip or "").strip()
    try:
        ipaddress.ip_address(source_ip)
    except ValueError:
        logger.warning("request has no usable source IP; calling the bank without PSU context")
        return None
    headers = dict(event.headers or {})
    copied = {field: _header(headers, name) for field, name in _COPIED.items()}
    return PsuInfo(ip_address=source_ip, http_method=http.method or None, **copied)
