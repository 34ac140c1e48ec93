"""Who is calling, from the JWT the HTTP API's authorizer validated: the user's own app (the user is the ``sub``), or
the fintech's backend (a token with the unattended scope, acting for the user named in ``Aisp-User``).

A server token never reaches a user-only route (:func:`current_user` refuses it) and its calls carry no ``PSU-*``
header, unless the deployment trusts forwarded addresses and the token has the attended-proxy scope. Design:
``docs/accounts.md`` (Unattended access and the quota).
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import TYPE_CHECKING, Final, NamedTuple

from aisp.api.psu import psu_from_event
from aisp.errors import InvalidRequestError, UnauthenticatedError, UserTokenRequiredError
from aisp.models.psu import PsuInfo
from aisp.settings import CallerSettings, load_settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

__all__ = ["AISP_USER_HEADER", "MAX_SUBJECT_LENGTH", "Caller", "CallerKind", "current_caller", "current_user"]

MAX_SUBJECT_LENGTH: Final = 255
AISP_USER_HEADER: Final = "Aisp-User"
_FORWARDED_IP_HEADER: Final = "PSU-IP-Address"


class CallerKind(StrEnum):
    """Who holds the token."""

    USER = "user"  # the user's app: the user is present
    BACKEND = "backend"  # the fintech's backend, unattended: no PSU-* header, the daily quota applies
    PROXY = "proxy"  # the fintech's backend relaying a present user (attended-proxy scope, TrustForwardedPsuIp)


class Caller(NamedTuple):
    """The user a request acts for, and the PSU context it may send (``None``: the user is not present)."""

    user_id: str
    kind: CallerKind
    psu: PsuInfo | None

    @property
    def attended(self) -> bool:
        """Whether the user is present (the bank gets their ``PSU-*`` context and counts nothing)."""
        return self.psu is not None


def _valid_subject(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip()) and len(value) <= MAX_SUBJECT_LENGTH and value.isprintable()


def _header(event: APIGatewayProxyEventV2, name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in (event.headers or {}).items() if key.lower() == wanted), None)


def _scopes(event: APIGatewayProxyEventV2) -> set[str]:
    """The token's scopes: what API Gateway parsed, else the ``scope`` (or ``scp``) claim, space separated."""
    authorizer = event.request_context.authorizer
    scopes = set(authorizer.jwt_scopes or ())
    claims = authorizer.jwt_claim
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, str):
        scopes.update(raw.strip("[]").split())
    return scopes


def _server_kind(scopes: set[str], settings: CallerSettings) -> CallerKind | None:
    if settings.attended_proxy_scope in scopes:
        return CallerKind.PROXY
    if settings.unattended_scope in scopes:
        return CallerKind.BACKEND
    return None


def current_user(event: APIGatewayProxyEventV2) -> str:
    """The user of a user-only route (connect, complete, consent, delete): ``requestContext.authorizer.jwt.claims.sub``.

    Raises
    ------
    UnauthenticatedError
        No authorizer context, no ``sub``, or a ``sub`` that is not a short printable string.
    UserTokenRequiredError
        A server token (the unattended or attended-proxy scope): only the user's own app may do this.
    InvalidRequestError
        A user token with ``Aisp-User`` (a user acts only for themselves).
    """
    settings = load_settings(CallerSettings)
    if _server_kind(_scopes(event), settings) is not None:
        raise UserTokenRequiredError("only the user's own app may call this route, not a server token")
    return _user_token_subject(event)


def _user_token_subject(event: APIGatewayProxyEventV2) -> str:
    if _header(event, AISP_USER_HEADER) is not None:
        raise InvalidRequestError(
            "Aisp-User is only for server tokens; a user token acts for its own user",
            details={"field": AISP_USER_HEADER},
        )
    subject = event.request_context.authorizer.jwt_claim.get("sub")
    if not isinstance(subject, str) or not _valid_subject(subject):
        raise UnauthenticatedError("no authenticated user in the request")
    return subject


def current_caller(event: APIGatewayProxyEventV2) -> Caller:
    """The caller of a read route, user or server token.

    Raises
    ------
    UnauthenticatedError
        A user token without a usable ``sub``.
    InvalidRequestError
        A server token without a valid ``Aisp-User``; a user token with one; a forwarded ``PSU-IP-Address`` that is
        not an IP address, or one sent without the attended-proxy scope.
    UserTokenRequiredError
        An attended-proxy token while the deployment does not trust forwarded addresses.
    """
    settings = load_settings(CallerSettings)
    kind = _server_kind(_scopes(event), settings)
    if kind is None:
        return Caller(_user_token_subject(event), CallerKind.USER, psu_from_event(event))
    user_id = _header(event, AISP_USER_HEADER)
    if user_id is None:
        raise InvalidRequestError(
            "a server token must name the user it acts for in Aisp-User", details={"field": AISP_USER_HEADER}
        )
    if not _valid_subject(user_id) or user_id != user_id.strip():
        raise InvalidRequestError(
            "Aisp-User must be a user id: 1 to 255 printable characters, no surrounding spaces",
            details={"field": AISP_USER_HEADER},
        )
    forwarded = _header(event, _FORWARDED_IP_HEADER)
    if kind is CallerKind.BACKEND:
        if forwarded is not None:
            raise InvalidRequestError(
                "PSU-IP-Address is accepted only from a server token with the attended-proxy scope",
                details={"field": _FORWARDED_IP_HEADER},
            )
        return Caller(user_id, CallerKind.BACKEND, None)
    if not settings.trust_forwarded_psu_ip:
        raise UserTokenRequiredError("this deployment does not trust forwarded PSU addresses (TrustForwardedPsuIp)")
    if forwarded is None:
        raise InvalidRequestError(
            "an attended-proxy token must forward the present user's address in PSU-IP-Address",
            details={"field": _FORWARDED_IP_HEADER},
        )
    try:
        address = ipaddress.ip_address(forwarded.strip())
    except ValueError:
        address = None
    # An IPv6 zone ("fe80::1%eth0") is free text of this host's interfaces, nothing the bank may be sent.
    if address is None or (isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None):
        raise InvalidRequestError(
            "PSU-IP-Address must be an IPv4 or IPv6 address", details={"field": _FORWARDED_IP_HEADER}
        )
    method = event.request_context.http.method or None
    return Caller(user_id, CallerKind.PROXY, PsuInfo(ip_address=str(address), http_method=method))
