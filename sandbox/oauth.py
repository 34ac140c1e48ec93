"""The OAuth2 token authority of a bank: ``POST /stet/psd2/oauth/token`` and ``POST /stet/psd2/oauth/revoke``.

BPCE rules: the client authenticates with its QWAC (mTLS) and sends its client_id; no ``scope`` on the token
requests; an authorization code is single-use and lives 5 minutes; ``redirect_uri`` must equal the authorize one;
one valid token pair per TPP × PSU (a new SCA revokes the previous pair); a refresh answers a new access token,
revokes the previous access token and returns the same refresh token; revoking either token revokes both.
Errors follow RFC 6749 §5.2 (``invalid_request``, ``invalid_client``, ``invalid_grant``, ``unsupported_grant_type``).

PKCE as an RFC 7636 server: a code whose authorize request carried a ``code_challenge`` is exchanged only with the
matching ``code_verifier`` (``S256`` or ``plain``), else ``invalid_grant``; a verifier sent for a code issued without
a challenge is refused too (RFC 9700 §2.1.1: no PKCE downgrade).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from http import HTTPStatus

from sandbox.core import SandboxCore
from sandbox.store import CODE_BYTES, DAY_SECONDS, AuthorizationCode, BankStore, Grant, new_token
from sandbox.web import Request, Response, json_response

_NO_STORE = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]
SCOPE = "aisp offline_access"
MAX_REMEMBERED_CODES = 10_000
PKCE_METHODS = frozenset({"S256", "plain"})
# RFC 7636 §4.1-4.2: verifiers, and so plain or S256 challenges, are 43-128 unreserved characters.
PKCE_VALUE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


class OAuthError(Exception):
    """An RFC 6749 error answer."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> Response:
        """The JSON error body (``error``, ``error_description``)."""
        return json_response(
            self.status, {"error": self.error, "error_description": self.description}, headers=list(_NO_STORE)
        )


def _invalid_grant(description: str) -> OAuthError:
    return OAuthError(HTTPStatus.BAD_REQUEST, "invalid_grant", description)


def _invalid_request(description: str) -> OAuthError:
    return OAuthError(HTTPStatus.BAD_REQUEST, "invalid_request", description)


class TokenEndpoints:
    """Token and revocation endpoints, shared by every bank (each call names its bank's store)."""

    def __init__(self, core: SandboxCore) -> None:
        self._core = core

    def token(self, store: BankStore, request: Request) -> Response:
        """``POST /stet/psd2/oauth/token``."""
        form = request.form()
        try:
            self._check_client(request, form)
            if "scope" in form:
                raise _invalid_request("scope must not be sent to the token endpoint")
            grant_type = form.get("grant_type", "")
            if grant_type == "authorization_code":
                grant = self._exchange(store, form)
            elif grant_type == "refresh_token":
                grant = self._refresh(store, form)
            elif not grant_type:
                raise _invalid_request("grant_type is required")
            else:
                raise OAuthError(HTTPStatus.BAD_REQUEST, "unsupported_grant_type", "Unsupported grant_type")
        except OAuthError as exc:
            return exc.response()
        return json_response(
            HTTPStatus.OK,
            {
                "access_token": grant.access_token,
                "token_type": "Bearer",
                "expires_in": self._core.settings.access_token_seconds,
                "scope": SCOPE,
                "refresh_token": grant.refresh_token,
            },
            headers=list(_NO_STORE),
        )

    def revoke(self, store: BankStore, request: Request) -> Response:
        """``POST /stet/psd2/oauth/revoke`` (RFC 7009): 200 whether or not the token was known."""
        form = request.form()
        try:
            self._check_client(request, form)
            token = form.get("token", "")
            if not token:
                raise _invalid_request("token is required")
        except OAuthError as exc:
            return exc.response()
        client_id = form["client_id"]
        with store.lock:
            grant = store.access_tokens.get(token) or store.refresh_tokens.get(token)
            if grant is not None and grant.client_id == client_id:
                store.revoke(grant)
        return json_response(HTTPStatus.OK, {}, headers=list(_NO_STORE))

    def _check_client(self, request: Request, form: dict[str, str]) -> None:
        client_id = form.get("client_id", "")
        if not client_id:
            raise _invalid_request("client_id is required")
        if client_id != self._core.tpp.client_id or request.client_id != client_id:
            raise OAuthError(
                HTTPStatus.UNAUTHORIZED,
                "invalid_client",
                "client_id is unknown or does not match the client certificate",
            )

    def _new_grant(self, store: BankStore, *, client_id: str, psu_id: str) -> Grant:
        """Issue a token pair, revoking the TPP's previous pair for this PSU (caller holds the lock)."""
        now = self._core.clock.now()
        settings = self._core.settings
        previous = store.grants.get((client_id, psu_id))
        if previous is not None:
            store.revoke(previous)
        grant = Grant(
            client_id=client_id,
            psu_id=psu_id,
            refresh_token=new_token(),
            refresh_expires_at=now + settings.refresh_token_days * DAY_SECONDS,
            access_token=new_token(),
            access_expires_at=now + settings.access_token_seconds,
        )
        store.grants[(client_id, psu_id)] = grant
        store.access_tokens[grant.access_token] = grant
        store.refresh_tokens[grant.refresh_token] = grant
        return grant

    def _exchange(self, store: BankStore, form: dict[str, str]) -> Grant:
        code, redirect_uri = form.get("code", ""), form.get("redirect_uri", "")
        if not code or not redirect_uri:
            raise _invalid_request("code and redirect_uri are required")
        now = self._core.clock.now()
        with store.lock:
            record = self._check_code(store, store.codes.get(code), form["client_id"], redirect_uri, now)
            _check_verifier(record, form.get("code_verifier"))
            record.used = True
            record.grant = self._new_grant(store, client_id=record.client_id, psu_id=record.psu_id)
            return record.grant

    @staticmethod
    def _check_code(
        store: BankStore, record: AuthorizationCode | None, client_id: str, redirect_uri: str, now: float
    ) -> AuthorizationCode:
        if record is None:
            raise _invalid_grant("Unknown authorization code")
        if record.used:
            # RFC 6749 §4.1.2: a replayed code revokes the tokens it produced.
            if record.grant is not None:
                store.revoke(record.grant)
            raise _invalid_grant("Authorization code already used")
        if now >= record.expires_at:
            raise _invalid_grant("Authorization code expired")
        if record.client_id != client_id:
            raise _invalid_grant("Authorization code was issued to another client")
        if record.redirect_uri != redirect_uri:
            raise _invalid_grant("redirect_uri does not match the authorization request")
        return record

    def _refresh(self, store: BankStore, form: dict[str, str]) -> Grant:
        refresh_token = form.get("refresh_token", "")
        if not refresh_token:
            raise _invalid_request("refresh_token is required")
        now = self._core.clock.now()
        with store.lock:
            grant = store.refresh_tokens.get(refresh_token)
            if grant is None or grant.revoked or grant.client_id != form["client_id"]:
                raise _invalid_grant("Unknown or revoked refresh token")
            if now >= grant.refresh_expires_at:
                store.revoke(grant)
                raise _invalid_grant("Refresh token expired, a new authentication of the PSU is required")
            if store.personas[grant.psu_id].refresh_revoked:
                store.revoke(grant)
                raise _invalid_grant("Access revoked by the PSU")
            store.access_tokens.pop(grant.access_token, None)
            grant.access_token = new_token()
            grant.access_expires_at = now + self._core.settings.access_token_seconds
            store.access_tokens[grant.access_token] = grant
            return grant


def _check_verifier(record: AuthorizationCode, verifier: str | None) -> None:
    """RFC 7636 §4.6, before the code is marked used: a wrong verifier does not burn the code for its owner."""
    if record.code_challenge is None:
        if verifier is not None:
            raise _invalid_grant("code_verifier sent, but the authorization request had no code_challenge")
        return
    if verifier is None:
        raise _invalid_grant("code_verifier is required: the authorization request had a code_challenge")
    if not PKCE_VALUE.fullmatch(verifier):
        raise _invalid_request("code_verifier must be 43-128 characters of [A-Za-z0-9-._~]")
    if record.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    else:
        expected = verifier
    if not hmac.compare_digest(expected, record.code_challenge):
        raise _invalid_grant("code_verifier does not match the code_challenge")


def authenticate(core: SandboxCore, store: BankStore, authorization: str | None, client_id: str) -> Grant | None:
    """The grant behind a ``Bearer`` access token, if it is current, unexpired and issued to ``client_id``."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    with store.lock:
        grant = store.access_tokens.get(token.strip())
    if grant is None or grant.revoked or grant.client_id != client_id:
        return None
    if core.clock.now() >= grant.access_expires_at:
        return None
    return grant


def issue_code(
    core: SandboxCore,
    store: BankStore,
    *,
    client_id: str,
    redirect_uri: str,
    psu_id: str,
    code_challenge: str | None = None,
    code_challenge_method: str | None = None,
) -> str:
    """Create a one-time authorization code, bound to the authorize request's PKCE challenge if it had one."""
    code = new_token(CODE_BYTES)
    record = AuthorizationCode(
        code=code,
        client_id=client_id,
        redirect_uri=redirect_uri,
        psu_id=psu_id,
        expires_at=core.clock.now() + core.settings.code_seconds,
        code_challenge=code_challenge,
        code_challenge_method=code_challenge_method,
    )
    with store.lock:
        if len(store.codes) >= MAX_REMEMBERED_CODES:
            # Forget codes expired for a day (a replay of those is still invalid_grant, as an unknown code).
            horizon = core.clock.now() - DAY_SECONDS
            for stale in [key for key, old in store.codes.items() if old.expires_at < horizon]:
                del store.codes[stale]
        store.codes[code] = record
    return code
