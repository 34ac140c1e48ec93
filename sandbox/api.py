"""The HTTPS application: routes ``/{bank_code}/stet/psd2/...`` to the token authority or the AISP API of that
bank, applies injected latency and faults, and enforces the client certificate on every bank endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from sandbox.admin import AdminApp
from sandbox.aisp import QUOTA_MESSAGE, AispEndpoints, error_response
from sandbox.core import SandboxCore
from sandbox.faults import FaultKind, FaultRule, Scope
from sandbox.oauth import TokenEndpoints
from sandbox.stet import ApiVersion
from sandbox.store import BankStore
from sandbox.web import Request, Response, redirect

ADMIN_PREFIX = "/_admin"
STET_PREFIX = ("stet", "psd2")
VERSIONS = {version.value: version for version in ApiVersion}

_FAULT_ANSWERS: dict[FaultKind, tuple[int, str]] = {
    FaultKind.ERROR_500: (HTTPStatus.INTERNAL_SERVER_ERROR, "INTE"),
    FaultKind.ERROR_503: (HTTPStatus.SERVICE_UNAVAILABLE, "Service temporarily unavailable"),
    FaultKind.TOO_MANY_REQUESTS: (HTTPStatus.TOO_MANY_REQUESTS, QUOTA_MESSAGE),
    FaultKind.TMRQ: (HTTPStatus.FORBIDDEN, "TMRQ"),
}


class ApiApp:
    """Everything on the mTLS listener."""

    def __init__(self, core: SandboxCore) -> None:
        self._core = core
        self._admin = AdminApp(core)
        self._tokens = TokenEndpoints(core)
        self._aisp = AispEndpoints(core)
        self._oauth: dict[str, Callable[[BankStore, Request], Response]] = {
            "token": self._tokens.token,
            "revoke": self._tokens.revoke,
        }

    def handle(self, request: Request) -> Response:
        """Route one request."""
        path = request.path
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            return self._admin.handle(request)
        segments = tuple(segment for segment in path.split("/") if segment)
        store = self._core.stores.get(segments[0]) if segments else None
        if store is None or segments[1:3] != STET_PREFIX or len(segments) < 4:  # noqa: PLR2004
            return self._not_found(request)
        rest = segments[3:]
        if rest == ("oauth", "authorize"):
            # Browsers belong on the screens listener (no client certificate prompt): send them there.
            query = f"?{request.target.partition('?')[2]}" if "?" in request.target else ""
            return redirect(f"{self._core.screens_origin}{path}{query}")
        if rest[0] == "oauth" and len(rest) == 2 and rest[1] in self._oauth:  # noqa: PLR2004
            return self._serve(Scope.TOKEN, store, request, lambda: self._oauth_call(rest[1], store, request))
        version = VERSIONS.get(rest[0])
        if version is not None and len(rest) > 1:
            response = self._serve(
                Scope.AISP, store, request, lambda: self._aisp.handle(store, version, rest[1:], request)
            )
            if self._core.response_seal is not None and not response.drop_connection:
                self._core.response_seal.seal(store.bank.code, request, response)
            return response
        return self._not_found(request)

    def _not_found(self, request: Request) -> Response:
        return error_response(self._core, HTTPStatus.NOT_FOUND, "Resource not found", request.path)

    def _oauth_call(self, name: str, store: BankStore, request: Request) -> Response:
        if request.method != "POST":
            return error_response(
                self._core,
                HTTPStatus.METHOD_NOT_ALLOWED,
                "Method not allowed",
                request.path,
                headers=[("Allow", "POST")],
            )
        return self._oauth[name](store, request)

    def _serve(self, scope: Scope, store: BankStore, request: Request, answer: Callable[[], Response]) -> Response:
        with store.lock:
            store.served[scope.value] += 1
        faults = self._core.faults
        if self._core.pause(faults.latency_seconds(scope, store.bank.code)):
            return Response(HTTPStatus.SERVICE_UNAVAILABLE, drop_connection=True)
        rule = faults.pick(scope, store.bank.code, page=request.query.get("page"), path=request.path)
        if rule is not None and rule.fault is FaultKind.SLOW:
            if self._core.pause(rule.hang_seconds):
                return Response(HTTPStatus.SERVICE_UNAVAILABLE, drop_connection=True)
        elif rule is not None:
            return self._fault(rule, request)
        if request.client_id is None:
            return error_response(
                self._core, HTTPStatus.UNAUTHORIZED, "A valid client certificate (QWAC) is required", request.path
            )
        return answer()

    def _fault(self, rule: FaultRule, request: Request) -> Response:
        if rule.fault is FaultKind.TIMEOUT:
            self._core.pause(rule.hang_seconds)
            return Response(HTTPStatus.GATEWAY_TIMEOUT, drop_connection=True)
        status, message = _FAULT_ANSWERS[rule.fault]
        headers: list[tuple[str, str]] = []
        if rule.fault is FaultKind.TOO_MANY_REQUESTS:
            headers.append(("Retry-After", str(rule.retry_after)))
        request_id = request.header("x-request-id")
        if request_id:
            headers.append(("X-Request-ID", request_id[:70]))
        return error_response(self._core, status, message, request.path, headers=headers)
