"""The STET AISP client for one BPCE establishment (OAuth2 + account information), over mTLS.

Every call sends a fresh ``X-Request-ID`` (UUID4) and an ``Accept`` the spec's operation produces (AISP:
``application/hal+json`` first, ``application/json`` too, which BPCE answers with), uses the client certificate
(``cert=``), the configured CA (``verify=``) and a timeout, never follows redirects, and never lets a ``requests``
exception escape. AISP calls are signed by :class:`~aisp.signing.BankSignatureAuth` and carry ``PSU-*`` headers only
when a :class:`PsuContext` is given (the PSU is connected); batch calls pass ``None`` and no PSU header is invented
(RTS art. 36(5), 89C3 "4 accesses per day"). Only GETs are retried, on 5xx other than 501 / timeout / connection
errors. AISP answers are checked per :class:`ResponseVerification` (the bank's ``Signature``/``Digest`` by a pinned
certificate, and the echo of our ``X-Request-ID``). Transaction filters go out as STET's ``format: date-time``
(the Europe/Paris midnight that starts the day) unless the bank's registry entry says it wants plain dates.
"""

from __future__ import annotations

import ipaddress
import math
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from http import HTTPStatus
from typing import Any, Final, Literal
from urllib.parse import quote, urlencode, urljoin, urlsplit, urlunsplit

import requests
import urllib3
from aws_lambda_powertools.metrics import MetricUnit

from aisp.errors import (
    BankNotFoundError,
    BankProtocolError,
    BankSignatureInvalidError,
    BankUnavailableError,
    ConfigurationError,
    InvalidRequestError,
    UpstreamError,
)
from aisp.observability import logger, metrics, tracer
from aisp.signing import BankSignatureAuth, PinnedCertificates, SignatureError, format_http_date, verify_response
from aisp.stet.errors import BpceCode, Endpoint, error_for_response, error_for_transport
from aisp.stet.schemas import (
    DEFAULT_STET_VERSION,
    AccountList,
    BalanceList,
    BeneficiaryList,
    ConsentRequest,
    EndUserIdentity,
    StetModel,
    TokenResponse,
    TransactionPage,
    decode_json,
    parse_stet,
)

__all__ = ["BankClient", "PsuContext", "ResponseVerification", "build_authorization_url"]

OAUTH_PATH: Final = "/stet/psd2/oauth"
DEFAULT_TIMEOUT: Final = (3.05, 10.0)
DEFAULT_MAX_PAGES: Final = 50
_BACKOFF_BASE: Final = 0.5
_BACKOFF_CAP: Final = 8.0
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}
_JSON: Final = "application/json"
# STET's GETs produce only application/hal+json; BPCE answers application/json. Both, HAL first.
_ACCEPT_AISP: Final = "application/hal+json, application/json"
# The seed's token request: "Content-Type:application/x-www-form-urlencoded; charset=utf-8".
_FORM: Final = "application/x-www-form-urlencoded; charset=utf-8"
_jitter = random.Random()  # noqa: S311 - backoff jitter, not cryptography


DateFormat = Literal["date-time", "date"]


def _last_sunday(year: int, month: int) -> date:
    last = date(year, month + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() + 1) % 7)


def paris_midnight(day: date) -> str:
    """The Europe/Paris midnight that starts ``day``, as RFC 3339 (``2026-01-05T00:00:00+01:00``).

    The EU summer-time rule (last Sunday of March to last Sunday of October, switching at 01:00 UTC) is computed
    here rather than read from a time-zone database, which the Lambda runtime does not promise: at midnight the
    offset is already +02:00 the day after the March switch, and still +02:00 on the October switch day.
    """
    summer = _last_sunday(day.year, 3) < day <= _last_sunday(day.year, 10)
    return f"{day.isoformat()}T00:00:00{'+02:00' if summer else '+01:00'}"


@dataclass(frozen=True, slots=True)
class ResponseVerification:
    """How a bank's signed answers are checked (registry policy + pinned certificates; see aisp.signing.response).

    ``off``: not at all. ``log``: a failure is logged and counted (``BankSignatureInvalid``), the answer used; an
    answer signed by a certificate we did not pin is only logged at info (nothing pinned yet). ``enforce``: a
    failure is a :class:`~aisp.errors.BankSignatureInvalidError` (502 ``bank_signature_invalid``).
    """

    mode: Literal["off", "log", "enforce"]
    pinned: PinnedCertificates


class _Method(StrEnum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"


def build_authorization_url(
    authorize_base_url: str,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    scope: str = "aisp",
    code_challenge: str | None = None,
    oauth_path: str = OAUTH_PATH,
) -> str:
    """Build the 89C3 authorize URL the PSU is redirected to.

    Parameters
    ----------
    authorize_base_url
        The establishment origin (plus optional prefix), e.g. ``https://www.13807.sandbox.api.89c3.com``.
    client_id, redirect_uri, state, scope
        OAuth2 parameters; ``redirect_uri`` must be sent identically to the later token request.
    code_challenge
        PKCE (RFC 7636): the ``S256`` challenge of the verifier the token request will send; ``None`` = no PKCE.
    oauth_path
        Where the bank's OAuth endpoints live (89C3: ``/stet/psd2/oauth``; the registry may name another).

    Returns
    -------
    str
        ``{authorize_base_url}/stet/psd2/oauth/authorize?response_type=code&client_id=..&redirect_uri=..&scope=..&state=..``
    """
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
    }
    if code_challenge is not None:
        params |= {"code_challenge": code_challenge, "code_challenge_method": "S256"}
    query = urlencode(params, quote_via=quote)
    return f"{authorize_base_url.rstrip('/')}{oauth_path}/authorize?{query}"


@dataclass(frozen=True, slots=True)
class PsuContext:
    """The connected PSU's context, rendered as STET ``PSU-*`` headers.

    Build one only when the PSU is actually present; batch calls pass ``None``.

    Raises
    ------
    InvalidRequestError
        ``ip_address`` is not an IP address, ``ip_port`` is out of range, or a value contains a line break.
    """

    ip_address: str
    ip_port: int | None = None
    http_method: str | None = None
    date: str | datetime | None = None
    geo_location: str | None = None
    user_agent: str | None = None
    referer: str | None = None
    accept: str | None = None
    accept_charset: str | None = None
    accept_encoding: str | None = None
    accept_language: str | None = None
    device_id: str | None = None

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.ip_address)
        except ValueError:
            raise InvalidRequestError("PSU IP address is invalid", details={"field": "ip_address"}) from None
        if self.ip_port is not None and not 0 < self.ip_port < 65536:  # noqa: PLR2004 - TCP port range
            raise InvalidRequestError("PSU IP port is invalid", details={"field": "ip_port"})
        for name, value in self._values():
            if "\r" in value or "\n" in value:
                raise InvalidRequestError("PSU header value is invalid", details={"field": name})

    def _values(self) -> Iterator[tuple[str, str]]:
        psu_date = format_http_date(self.date) if isinstance(self.date, datetime) else self.date
        for header, value in (
            ("PSU-IP-Address", self.ip_address),
            ("PSU-IP-Port", None if self.ip_port is None else str(self.ip_port)),
            ("PSU-HTTP-Method", self.http_method),
            ("PSU-Date", psu_date),
            ("PSU-GEO-Location", self.geo_location),
            ("PSU-User-Agent", self.user_agent),
            ("PSU-Referer", self.referer),
            ("PSU-Accept", self.accept),
            ("PSU-Accept-Charset", self.accept_charset),
            ("PSU-Accept-Encoding", self.accept_encoding),
            ("PSU-Accept-Language", self.accept_language),
            ("PSU-Device-ID", self.device_id),
        ):
            if value is not None and value != "":
                yield header, value

    def to_headers(self) -> dict[str, str]:
        """The ``PSU-*`` headers, in STET order, without empty ones."""
        return dict(self._values())


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


def _never_sent(exc: requests.RequestException) -> bool:
    """Whether the request cannot have reached the bank: no connection was made (refused, or not in time)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.SSLError) or not isinstance(exc, requests.ConnectionError):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _normalise(url: str) -> str:
    """Canonical form for comparisons (scheme/host lower-case, default port dropped, no fragment)."""
    parts = urlsplit(url)
    scheme, host, port = _origin(url)
    netloc = host if port == _DEFAULT_PORTS.get(scheme) or port is None else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


class BankClient:
    """STET AISP + OAuth2 client for one BPCE establishment.

    Parameters
    ----------
    bank_code
        BPCE establishment code (e.g. ``13807``), used in logs and errors.
    base_url
        Bank origin plus optional path prefix: ``https://www.13807.sandbox.api.89c3.com`` or, for the offline
        sandbox, ``https://127.0.0.1:8443/13807``. OAuth lives at ``{base_url}/stet/psd2/oauth/...``.
    api_prefix
        AISP API prefix, e.g. ``/stet/psd2/v1`` or ``/stet/psd2/v1.4.2``.
    client_id
        The TPP client_id (sent in the token forms).
    auth
        The request signer for AISP calls (token calls are not signed).
    cert
        ``(certificate_path, key_path)`` of the QWAC for mTLS, or ``None``.
    verify
        CA bundle path, or ``True`` for the system store. ``False`` is refused (never turn TLS checks off).
    stet_version
        The STET release the bank serves (registry); shapes the PUT /consents body (1.5 adds ``owners``).
    date_format
        ``date-time`` (STET) or ``date`` (a bank that wants ``YYYY-MM-DD``) for ``dateFrom``/``dateTo``.
    oauth_path
        Path of the token and revoke endpoints under ``base_url`` (89C3: ``/stet/psd2/oauth``).
    response_verification
        The check of the bank's signed AISP answers and of their ``X-Request-ID`` echo; ``None`` = none.
    session
        A ``requests.Session`` to reuse (keep-alive, tests); one is created otherwise.
    timeout
        ``requests`` timeout (connect, read) for every call.
    max_get_retries
        Extra attempts for a GET after 5xx / timeout / connection error.
    sleep
        Injected for tests; receives each backoff delay in seconds.

    Raises
    ------
    ConfigurationError
        ``base_url`` is not an absolute https URL, or an argument is empty/out of range.
    """

    def __init__(
        self,
        *,
        bank_code: str,
        base_url: str,
        api_prefix: str,
        client_id: str,
        auth: BankSignatureAuth,
        cert: tuple[str, str] | None,
        verify: str | bool = True,
        stet_version: str = DEFAULT_STET_VERSION,
        date_format: DateFormat = "date-time",
        oauth_path: str = OAUTH_PATH,
        response_verification: ResponseVerification | None = None,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        max_get_retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            raise ConfigurationError("bank base_url must be an absolute https URL", details={"bank_code": bank_code})
        if not bank_code or not client_id:
            raise ConfigurationError("bank_code and client_id are required", details={"bank_code": bank_code})
        if verify is False:
            raise ConfigurationError("TLS verification cannot be disabled", details={"bank_code": bank_code})
        if max_get_retries < 0:
            raise ConfigurationError("max_get_retries must be >= 0", details={"bank_code": bank_code})
        self.bank_code = bank_code
        self.client_id = client_id
        self.stet_version = stet_version
        self._date_format = date_format
        self._base = base_url.rstrip("/")
        self._origin = _origin(base_url)
        self._api = f"{self._base}/{api_prefix.strip('/')}"
        self._oauth = f"{self._base}/{oauth_path.strip('/')}"
        if (
            response_verification is not None
            and response_verification.mode == "enforce"
            and not (response_verification.pinned)
        ):
            raise ConfigurationError(
                "response signatures cannot be enforced without a pinned bank certificate",
                details={"bank_code": bank_code},
            )
        self._verification = response_verification
        self._auth = auth
        self._cert = cert
        self._verify = verify
        self._timeout = timeout
        self._max_get_retries = max_get_retries
        self._sleep = sleep
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no netrc credentials, proxy or CA overrides from the environment
        self._session = session

    def __repr__(self) -> str:
        return f"BankClient(bank_code={self.bank_code!r}, base_url={self._base!r})"

    # ------------------------------------------------------------------------------------------------------------
    # OAuth2 (mTLS, not signed, form-encoded, no scope)
    # ------------------------------------------------------------------------------------------------------------

    @tracer.capture_method(capture_response=False)
    def exchange_code(self, code: str, redirect_uri: str, *, code_verifier: str | None = None) -> TokenResponse:
        """Exchange an authorization code (``grant_type=authorization_code``) for tokens.

        ``redirect_uri`` must be identical to the one sent to /authorize; ``scope`` is not sent (89C3 rule);
        ``code_verifier`` is PKCE's (RFC 7636), sent when the authorize request carried its challenge.

        Raises
        ------
        ReauthRequiredError
            ``invalid_grant`` (code expired/used) or 401/403.
        UpstreamError
            Other bank errors (see :func:`aisp.stet.errors.error_for_response`).
        """
        if not code or not redirect_uri:
            raise InvalidRequestError("authorization code and redirect_uri are required")
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier is not None:
            form["code_verifier"] = code_verifier
        return self._token_call("exchange_code", form)

    @tracer.capture_method(capture_response=False)
    def refresh(self, refresh_token: str) -> TokenResponse:
        """Get a new access token with ``grant_type=refresh_token`` (BPCE returns the same refresh token).

        Raises
        ------
        ReauthRequiredError
            The refresh token is no longer accepted (``invalid_grant``, 401, 403).
        """
        if not refresh_token:
            raise InvalidRequestError("refresh token is required")
        return self._token_call("refresh", {"grant_type": "refresh_token", "refresh_token": refresh_token})

    @tracer.capture_method(capture_response=False)
    def revoke(self, token: str, *, token_type_hint: str | None = None) -> None:
        """Revoke a token (RFC 7009, ``{base_url}/stet/psd2/oauth/revoke``); any 2xx is success."""
        form = {"token": token, "client_id": self.client_id}
        if token_type_hint:
            form["token_type_hint"] = token_type_hint
        self._request(
            _Method.POST,
            f"{self._oauth}/revoke",
            operation="revoke",
            endpoint=Endpoint.REVOKE,
            form=form,
        )

    def _token_call(self, operation: str, form: dict[str, str]) -> TokenResponse:
        response, request_id = self._request(
            _Method.POST,
            f"{self._oauth}/token",
            operation=operation,
            endpoint=Endpoint.TOKEN,
            form={**form, "client_id": self.client_id},
        )
        payload = decode_json(
            response.content,
            where=operation,
            bank_code=self.bank_code,
            request_id=request_id,
            status=response.status_code,
        )
        if payload is None:
            raise BankProtocolError(
                "bank token response is empty",
                status=response.status_code,
                bank_code=self.bank_code,
                request_id=request_id,
                details={"where": operation},
            )
        return self._parse(TokenResponse, payload, operation, response, request_id)

    # ------------------------------------------------------------------------------------------------------------
    # AISP
    # ------------------------------------------------------------------------------------------------------------

    @tracer.capture_method(capture_response=False)
    def get_accounts(self, access_token: str, psu: PsuContext | None) -> AccountList:
        """GET /accounts. A 204 or a 404 ``NAAC`` (no eligible account) gives an empty :class:`AccountList`."""
        try:
            response, request_id = self._aisp_get("get_accounts", f"{self._api}/accounts", access_token, psu)
        except BankNotFoundError as exc:
            if exc.details.get("bank_error_code") == BpceCode.NAAC:
                logger.info("bank reports no eligible account", bank_code=self.bank_code, status=exc.status)
                return AccountList()
            raise
        return self._parse_body(AccountList, "get_accounts", response, request_id)

    @tracer.capture_method(capture_response=False)
    def put_consents(self, access_token: str, consent: ConsentRequest, psu: PsuContext | None) -> None:
        """PUT /consents with the STET ``Access`` body; any 2xx (201, or 200 with empty body) is success.

        Never retried. The new consent replaces the previous one.
        """
        self._request(
            _Method.PUT,
            f"{self._api}/consents",
            operation="put_consents",
            endpoint=Endpoint.AISP,
            access_token=access_token,
            psu=psu,
            body=consent.to_json_bytes(self.stet_version),
        )

    @tracer.capture_method(capture_response=False)
    def get_balances(self, access_token: str, account_id: str, psu: PsuContext | None) -> BalanceList:
        """GET /accounts/{id}/balances (204 → empty list)."""
        url = f"{self._account_url(account_id)}/balances"
        response, request_id = self._aisp_get("get_balances", url, access_token, psu)
        return self._parse_body(BalanceList, "get_balances", response, request_id)

    @tracer.capture_method(capture_response=False)
    def get_transactions_page(
        self,
        access_token: str,
        account_id: str,
        *,
        psu: PsuContext | None,
        date_from: date | None = None,
        date_to: date | None = None,
        page_url: str | None = None,
    ) -> TransactionPage:
        """GET one page of /accounts/{id}/transactions.

        Parameters
        ----------
        date_from, date_to
            STET ``dateFrom`` (inclusive) / ``dateTo`` (exclusive), ignored when ``page_url`` is given.
        page_url
            A ``next_url`` from a previous page (absolute, same bank origin).

        Returns
        -------
        TransactionPage
            Its ``next_url`` is absolute and checked to be on the bank's origin, or ``None`` on the last page
            (missing/empty ``next``, or ``next`` equal to ``self`` or to this page).

        Raises
        ------
        BankProtocolError
            ``page_url`` or the bank's ``next`` points to another scheme/host/port.
        """
        if page_url is not None:
            url = self._checked_url(page_url, base=self._base + "/", operation="get_transactions")
        else:
            url = self._transactions_url(account_id, date_from, date_to)
        response, request_id = self._aisp_get("get_transactions", url, access_token, psu, first_page=page_url is None)
        page = self._parse_body(TransactionPage, "get_transactions", response, request_id)
        return page.model_copy(update={"next_url": self._next_url(page, url, request_id)})

    def iter_transaction_pages(
        self,
        access_token: str,
        account_id: str,
        *,
        psu: PsuContext | None,
        date_from: date | None = None,
        date_to: date | None = None,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> Iterator[TransactionPage]:
        """Yield transaction pages, following ``_links.next`` until the last page.

        Stops on a missing or empty ``next``, on ``next`` equal to ``self`` or to any page already fetched.

        Raises
        ------
        BankProtocolError
            A ``next`` link leaves the bank's origin, or more than ``max_pages`` pages would be needed.
        """
        seen = {_normalise(self._transactions_url(account_id, date_from, date_to))}
        page = self.get_transactions_page(
            access_token, account_id, psu=psu, date_from=date_from, date_to=date_to, page_url=None
        )
        pages = 1
        while True:
            yield page
            next_url = page.next_url
            if next_url is None or _normalise(next_url) in seen:
                return
            if pages >= max_pages:
                raise BankProtocolError(
                    "bank pagination exceeds the page limit",
                    bank_code=self.bank_code,
                    details={"operation": "get_transactions", "max_pages": max_pages},
                )
            seen.add(_normalise(next_url))
            page = self.get_transactions_page(access_token, account_id, psu=psu, page_url=next_url)
            pages += 1

    @tracer.capture_method(capture_response=False)
    def get_trusted_beneficiaries(self, access_token: str, psu: PsuContext | None) -> BeneficiaryList:
        """GET /trusted-beneficiaries (204 → empty list)."""
        url = f"{self._api}/trusted-beneficiaries"
        response, request_id = self._aisp_get("get_trusted_beneficiaries", url, access_token, psu)
        return self._parse_body(BeneficiaryList, "get_trusted_beneficiaries", response, request_id)

    @tracer.capture_method(capture_response=False)
    def get_end_user_identity(self, access_token: str, psu: PsuContext | None) -> EndUserIdentity | None:
        """GET /end-user-identity (1.4.2 or 1.5 shape); 204 or empty body → ``None``."""
        url = f"{self._api}/end-user-identity"
        response, request_id = self._aisp_get("get_end_user_identity", url, access_token, psu)
        if response.status_code == HTTPStatus.NO_CONTENT or not response.content.strip():
            return None
        return self._parse_body(EndUserIdentity, "get_end_user_identity", response, request_id)

    # ------------------------------------------------------------------------------------------------------------
    # Internals
    # ------------------------------------------------------------------------------------------------------------

    def _account_url(self, account_id: str) -> str:
        if not account_id:
            raise InvalidRequestError("account id is required")
        return f"{self._api}/accounts/{quote(account_id, safe='')}"

    def _transactions_url(self, account_id: str, date_from: date | None, date_to: date | None) -> str:
        params = {
            key: self._date_param(value)
            for key, value in (("dateFrom", date_from), ("dateTo", date_to))
            if value is not None
        }
        url = f"{self._account_url(account_id)}/transactions"
        # ":" stays readable (RFC 3986 allows it in a query); "+" of the offset is percent-encoded.
        return f"{url}?{urlencode(params, safe=':', quote_via=quote)}" if params else url

    def _date_param(self, day: date) -> str:
        return day.isoformat() if self._date_format == "date" else paris_midnight(day)

    def _checked_url(self, href: str, *, base: str, operation: str) -> str:
        """Resolve ``href`` against ``base`` and refuse anything off the bank's scheme+host+port."""
        resolved = urljoin(base, href.strip())
        if _origin(resolved) != self._origin:
            raise BankProtocolError(
                "bank link points outside the bank origin",
                bank_code=self.bank_code,
                details={"operation": operation, "field": "_links.next"},
            )
        return resolved

    def _next_url(self, page: TransactionPage, page_url: str, request_id: str) -> str | None:
        links = page.links
        href = links.next.href if links is not None and links.next is not None else None
        if href is None or not href.strip():
            return None
        resolved = self._checked_url(href, base=page_url, operation="get_transactions")
        self_href = links.self_link.href if links is not None and links.self_link is not None else None
        candidates = {_normalise(page_url)}
        if self_href and self_href.strip():
            candidates.add(_normalise(urljoin(page_url, self_href.strip())))
        if _normalise(resolved) in candidates:
            logger.info("bank next link repeats the current page", bank_code=self.bank_code, request_id=request_id)
            return None
        return resolved

    def _aisp_get(
        self, operation: str, url: str, access_token: str, psu: PsuContext | None, *, first_page: bool = True
    ) -> tuple[requests.Response, str]:
        return self._request(
            _Method.GET,
            url,
            operation=operation,
            endpoint=Endpoint.AISP,
            access_token=access_token,
            psu=psu,
            # Without the PSU, BPCE counts each first page against its daily quota: a retry would spend another.
            counted=psu is None and first_page,
        )

    def _parse_body[ModelT: StetModel](
        self, model: type[ModelT], operation: str, response: requests.Response, request_id: str
    ) -> ModelT:
        payload = None
        if response.status_code != HTTPStatus.NO_CONTENT:
            payload = decode_json(
                response.content,
                where=operation,
                bank_code=self.bank_code,
                request_id=request_id,
                status=response.status_code,
            )
        return self._parse(model, payload, operation, response, request_id)

    def _parse[ModelT: StetModel](
        self, model: type[ModelT], payload: Any, operation: str, response: requests.Response, request_id: str
    ) -> ModelT:
        return parse_stet(
            model,
            payload,
            where=operation,
            bank_code=self.bank_code,
            request_id=request_id,
            status=response.status_code,
        )

    def _headers(
        self,
        request_id: str,
        endpoint: Endpoint,
        access_token: str | None,
        psu: PsuContext | None,
        content_type: str | None,
    ) -> dict[str, str]:
        headers = {"X-Request-ID": request_id, "Accept": _ACCEPT_AISP if endpoint is Endpoint.AISP else _JSON}
        if access_token is not None:
            if not access_token or "\n" in access_token or "\r" in access_token:
                raise InvalidRequestError("access token is empty or invalid")
            headers["Authorization"] = f"Bearer {access_token}"
        if content_type is not None:
            headers["Content-Type"] = content_type
        if psu is not None:
            headers.update(psu.to_headers())
        return headers

    def _request(
        self,
        method: _Method,
        url: str,
        *,
        operation: str,
        endpoint: Endpoint,
        access_token: str | None = None,
        psu: PsuContext | None = None,
        body: bytes | None = None,
        form: Mapping[str, str] | None = None,
        counted: bool = False,
    ) -> tuple[requests.Response, str]:
        """Send with retries (GET only); return the 2xx response and the X-Request-ID that obtained it.

        A ``counted`` request (one the bank counts against the unattended quota) is retried only when it never left
        (connection refused or not established in time): a 5xx or a read timeout may have been counted.
        """
        attempts = 1 + (self._max_get_retries if method is _Method.GET else 0)
        attempt = 0
        while True:
            attempt += 1
            request_id = str(uuid.uuid4())
            cause: requests.RequestException | None = None
            try:
                response = self._send_once(
                    method,
                    url,
                    request_id=request_id,
                    endpoint=endpoint,
                    access_token=access_token,
                    psu=psu,
                    body=body,
                    form=form,
                )
            except requests.RequestException as exc:
                cause = exc
                error: UpstreamError = error_for_transport(
                    exc, operation=operation, bank_code=self.bank_code, request_id=request_id
                )
                # Retry timeouts and connection failures only; a TLS failure (bad/missing client certificate,
                # unknown CA) or a malformed request will not heal in a second.
                retryable = isinstance(exc, requests.Timeout | requests.ConnectionError) and not isinstance(
                    exc, requests.exceptions.SSLError
                )
                if _never_sent(exc):
                    error.details["sent"] = False
                elif counted:
                    retryable = False
                logger.warning(
                    "bank call failed",
                    bank_code=self.bank_code,
                    operation=operation,
                    attempt=attempt,
                    failure=error.details.get("failure"),
                    request_id=request_id,
                )
            else:
                logger.info(
                    "bank call",
                    bank_code=self.bank_code,
                    operation=operation,
                    status=response.status_code,
                    attempt=attempt,
                    request_id=request_id,
                )
                if 200 <= response.status_code < 300:  # noqa: PLR2004 - HTTP success class
                    if endpoint is Endpoint.AISP:
                        self._check_answer(response, request_id, operation)
                    return response, request_id
                error = error_for_response(
                    response, operation=operation, endpoint=endpoint, bank_code=self.bank_code, request_id=request_id
                )
                retryable = isinstance(error, BankUnavailableError) and not counted
            if not retryable or attempt >= attempts:
                raise error from cause
            self._sleep(self._backoff(attempt - 1))

    def _check_answer(self, response: requests.Response, request_id: str, operation: str) -> None:
        """Check the answer's signature, digest and request id echo per :class:`ResponseVerification`."""
        check = self._verification
        if check is None or check.mode == "off":
            return
        sent = response.request
        try:
            verify_response(
                sent.method or "",
                sent.url or "",
                response.headers,
                response.content,
                request_id=request_id,
                pinned=check.pinned,
            )
        except SignatureError as exc:
            if exc.reason == "unpinned_key" and check.mode == "log":
                logger.info(
                    "bank response signed by a certificate not pinned",
                    bank_code=self.bank_code,
                    operation=operation,
                    request_id=request_id,
                )
                return
            metrics.add_metric(name="BankSignatureInvalid", unit=MetricUnit.Count, value=1)
            logger.warning(
                "bank response signature invalid",
                bank_code=self.bank_code,
                operation=operation,
                request_id=request_id,
                reason=exc.reason,
                mode=check.mode,
            )
            if check.mode == "enforce":
                raise BankSignatureInvalidError(
                    "bank response failed its signature check",
                    status=response.status_code,
                    bank_code=self.bank_code,
                    request_id=request_id,
                    details={"operation": operation, "reason": exc.reason},
                ) from None

    @staticmethod
    def _backoff(attempt: int) -> float:
        """Exponential backoff with equal jitter: attempt 0 → [0.25, 0.5) s, 1 → [0.5, 1.0) s..."""
        ceiling = min(_BACKOFF_CAP, math.ldexp(_BACKOFF_BASE, attempt))
        return ceiling / 2 + _jitter.uniform(0, ceiling / 2)

    def _send_once(
        self,
        method: _Method,
        url: str,
        *,
        request_id: str,
        endpoint: Endpoint,
        access_token: str | None,
        psu: PsuContext | None,
        body: bytes | None,
        form: Mapping[str, str] | None,
    ) -> requests.Response:
        content_type = _JSON if body is not None else (_FORM if form is not None else None)
        headers = self._headers(request_id, endpoint, access_token, psu, content_type)
        data: bytes | None = body if body is not None else (urlencode(form).encode("ascii") if form else None)
        return self._session.request(
            method.value,
            url,
            headers=headers,
            data=data,
            auth=self._auth if endpoint is Endpoint.AISP else None,
            cert=self._cert,
            verify=self._verify,
            timeout=self._timeout,
            allow_redirects=False,
        )
