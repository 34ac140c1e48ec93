"""The local HTTP API: serves ``template.yaml``'s ``HttpApi`` routes by calling each function's handler in-process.

Three pieces:

* :class:`FunctionRuntime` loads one function's handler module from its file under a unique module name
  (every function is a top-level ``app``, so ``import app`` would collide) and invokes it one request at a time,
  with a Lambda-like context. One invocation at a time per function is what one warm Lambda instance does, and it
  is required here: a Powertools resolver keeps the current event on its module-level ``app`` object.
* :class:`LocalApi` turns a request into an API Gateway payload 2.0 event (:mod:`local.events`), applies the JWT
  authorizer and the API's ``CorsConfiguration`` (preflights answered, headers added, as API Gateway does), and
  serves the adapter's own routes: ``/`` (the quickstart page), ``/_local/static/*``, ``/_local/token`` (user
  and server tokens) and the stack's controls (:mod:`local.controls`); never in the template.
* :class:`ApiServer`, a threaded ``http.server`` bound on construction (so the port is known before the functions'
  environment is resolved) that tracks its connections, so :meth:`ApiServer.stop` leaves no thread behind.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import mimetypes
import secrets
import socketserver
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

from local.events import (
    HttpResponse,
    IncomingRequest,
    InvalidResponseError,
    build_event,
    gateway_message,
    match_route,
    response_from_result,
)
from local.jwt import JwtError, JwtValidator, LocalIssuer, claim_strings, token_scopes
from local.servers import TrackedConnectionsMixin
from local.template import (
    ACCOUNT_ID,
    REGION,
    STACK_NAME,
    CorsConfig,
    FunctionSpec,
    LocalApp,
    Route,
    TemplateError,
)

if TYPE_CHECKING:
    from local.controls import LocalControls

logger = logging.getLogger("local.api")

STATIC_DIR: Final = Path(__file__).with_name("static")
LOCAL_PREFIX: Final = "/_local/"
MAX_BODY_BYTES: Final = 10 * 1024 * 1024  # API Gateway's payload limit
IDLE_CONNECTION_SECONDS: Final = 30
IDP_USAGE: Final = (
    "give exactly one user: /_local/token?user=<id> (a user token), or a client and its scope: "
    "/_local/token?client=<id>&scope=<scope> (a server token)"
)


class InvocationError(Exception):
    """The handler raised, timed out or returned something that is not JSON (API Gateway answers 500)."""


@dataclass(slots=True)
class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline: float
    identity: Any = None
    client_context: Any = None
    tenant_id: str | None = None

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's ``Timeout``."""
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def module_name(function: str) -> str:
    """The unique module name a function's handler file is loaded under (``local_fn_ConnectFunction``)."""
    return f"local_fn_{function}"


class FunctionRuntime:
    """One function: its handler loaded in isolation, invoked one request at a time."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self.module = self._load(spec)
        handler = getattr(self.module, spec.handler_attribute, None)
        if not callable(handler):
            raise TemplateError(f"{spec.name}.Handler: {spec.handler_file} has no callable {spec.handler_attribute}")
        self._handler: Callable[[dict[str, Any], LambdaContext], Any] = handler
        self._lock = threading.Lock()

    @staticmethod
    def _load(spec: FunctionSpec) -> ModuleType:
        name = module_name(spec.name)
        module_spec = importlib.util.spec_from_file_location(name, spec.handler_file)
        if module_spec is None or module_spec.loader is None:
            raise TemplateError(f"{spec.name}.Handler: cannot load {spec.handler_file}")
        module = importlib.util.module_from_spec(module_spec)
        # Registered before it runs, so that pydantic and dataclasses can resolve the module's own annotations.
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module

    def invoke(self, event: Mapping[str, Any]) -> Any:
        """Call the handler with a JSON copy of ``event`` and return its JSON-serialisable result.

        Raises
        ------
        InvocationError
            The handler raised, ran past the function's ``Timeout`` or returned something that is not JSON.
        """
        payload = json.loads(json.dumps(event))
        with self._lock:
            started = time.monotonic()
            context = LambdaContext(
                function_name=f"{STACK_NAME}-{self.spec.name}",
                function_version="$LATEST",
                invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{STACK_NAME}-{self.spec.name}",
                memory_limit_in_mb=self.spec.memory_mb,
                aws_request_id=str(uuid.uuid4()),
                log_group_name=f"/aws/lambda/{STACK_NAME}-{self.spec.name}",
                log_stream_name=f"local/[$LATEST]{uuid.uuid4().hex}",
                deadline=started + self.spec.timeout_seconds,
            )
            try:
                result = self._handler(payload, context)
            except Exception as exc:
                logger.exception("function %s raised", self.spec.name)
                raise InvocationError(f"{self.spec.name} raised {type(exc).__name__}") from exc
            elapsed = time.monotonic() - started
        if elapsed > self.spec.timeout_seconds:
            logger.error(
                "function %s ran %.1fs, past its Timeout of %ss", self.spec.name, elapsed, self.spec.timeout_seconds
            )
            raise InvocationError(f"{self.spec.name} timed out")
        try:
            return json.loads(json.dumps(result))
        except (TypeError, ValueError) as exc:
            logger.error("function %s returned a value that is not JSON", self.spec.name)
            raise InvocationError(f"{self.spec.name} returned a value that is not JSON") from exc


def load_functions(app: LocalApp) -> dict[str, FunctionRuntime]:
    """Load every function of ``app`` (a cold start for each, at start rather than on the first request)."""
    return {name: FunctionRuntime(spec) for name, spec in app.functions.items()}


def _check_local_routes(routes: tuple[Route, ...]) -> None:
    for route in routes:
        if route.path == "/" or route.path.startswith(LOCAL_PREFIX) or route.path == LOCAL_PREFIX.rstrip("/"):
            raise TemplateError(
                f"{route.function}.Events.{route.event}: {route.path} is reserved for the local adapter's own routes"
            )


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, rest = value.strip().partition(" ")
    # API Gateway accepts the token with or without the Bearer scheme.
    token = rest.strip() if scheme.lower() == "bearer" else value.strip()
    return token or None


class LocalApi:
    """Routes a request to the adapter's own pages or to a function, like API Gateway would.

    Parameters
    ----------
    app
        The resolved template.
    functions
        The loaded functions (:func:`load_functions`).
    issuer
        The local identity provider behind ``/_local/token``.
    static_dir
        Files of the quickstart page.
    controls
        The stack's ``POST /_local/...`` controls (:mod:`local.controls`); ``None``: those paths are 404.
    """

    def __init__(
        self,
        app: LocalApp,
        functions: Mapping[str, FunctionRuntime],
        *,
        issuer: LocalIssuer | None = None,
        static_dir: Path = STATIC_DIR,
        controls: LocalControls | None = None,
    ) -> None:
        _check_local_routes(app.routes)
        self.app = app
        self.functions = dict(functions)
        self.issuer = issuer
        self.static_dir = static_dir
        self.controls = controls
        keys = issuer.public_keys if issuer is not None else {}
        self._validators = {
            authorizer.name: JwtValidator(issuer=authorizer.issuer, audiences=authorizer.audiences, keys=keys)
            for authorizer in app.authorizers
        }

    def handle(self, request: IncomingRequest) -> HttpResponse:
        """Answer one request; never raises."""
        request_id = b64_request_id()
        try:
            response = self._handle(request, request_id)
        except Exception:
            logger.exception("adapter error on %s %s", request.method, request.raw_path)
            response = gateway_message(500, "Internal Server Error")
        response.headers.append(("apigw-requestid", request_id))
        return response

    def _handle(self, request: IncomingRequest, request_id: str) -> HttpResponse:
        if request.method in {"GET", "HEAD"}:
            local = self._local_route(request)
            if local is not None:
                return local
        if self.controls is not None and self.controls.serves(request):
            # The page's own origin only (the controls refuse any other): no CORS headers
            return self.controls.handle(request)
        cors = self.app.cors
        origin = request.header("origin")
        if cors is None or origin is None:
            return self._api(request, request_id)
        if request.method == "OPTIONS" and request.header("access-control-request-method") is not None:
            return preflight(cors, origin)
        return with_cors(self._api(request, request_id), cors, origin)

    def _api(self, request: IncomingRequest, request_id: str) -> HttpResponse:
        matched = match_route(self.app.routes, request.method, request.raw_path)
        if matched is None:
            return gateway_message(404, "Not Found")
        route, path_parameters = matched
        jwt: dict[str, Any] | None = None
        if route.authorizer is not None:
            outcome = self._authorize(request, route)
            if isinstance(outcome, HttpResponse):
                return outcome
            jwt = outcome
        event = build_event(request, route, path_parameters, request_id=request_id, jwt=jwt)
        try:
            result = self.functions[route.function].invoke(event)
            return response_from_result(result)
        except InvalidResponseError as exc:
            logger.error("function %s returned an invalid response: %s", route.function, exc)
            return gateway_message(500, "Internal Server Error")
        except InvocationError:
            return gateway_message(500, "Internal Server Error")

    def _authorize(self, request: IncomingRequest, route: Route) -> dict[str, Any] | HttpResponse:
        assert route.authorizer is not None  # noqa: S101 - checked by the caller
        token = _bearer(request.header(route.authorizer.header))
        if token is None:
            return gateway_message(401, "Unauthorized", [("www-authenticate", "Bearer")])
        try:
            claims = self._validators[route.authorizer.name].validate(token)
        except JwtError as exc:
            challenge = f'Bearer scope="" error="invalid_token" error_description="{exc}"'
            return gateway_message(401, "Unauthorized", [("www-authenticate", challenge)])
        scopes = token_scopes(claims)
        if route.scopes and not set(route.scopes) & set(scopes):
            challenge = f'Bearer scope="{" ".join(route.scopes)}" error="insufficient_scope"'
            return gateway_message(403, "Forbidden", [("www-authenticate", challenge)])
        return {"claims": claim_strings(claims), "scopes": scopes or None}

    def _local_route(self, request: IncomingRequest) -> HttpResponse | None:
        path = request.raw_path
        if path == "/":
            page = self._static("index.html")
            if page is not None:
                page.headers += page_security_headers(request.server_port)
            return page
        if path.startswith(LOCAL_PREFIX + "static/"):
            return self._static(path.removeprefix(LOCAL_PREFIX + "static/")) or gateway_message(404, "Not Found")
        if path == LOCAL_PREFIX + "token":
            return self._token(request)
        if path == LOCAL_PREFIX + "jwks.json" and self.issuer is not None:
            return _json(200, self.issuer.jwks())
        return None

    def _static(self, name: str) -> HttpResponse | None:
        files = {p.name: p for p in self.static_dir.iterdir() if p.is_file()} if self.static_dir.is_dir() else {}
        file = files.get(name)  # only files of the folder itself: no traversal
        if file is None:
            return None
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type == "application/javascript":
            content_type += "; charset=utf-8"
        headers = [("content-type", content_type), ("cache-control", "no-cache")]
        return HttpResponse(200, headers, file.read_bytes())

    def _token(self, request: IncomingRequest) -> HttpResponse:
        if self.issuer is None:
            return gateway_message(404, "Not Found")
        try:
            token = _issue(self.issuer, parse_qs(request.raw_query))
        except ValueError as exc:
            return _json(400, {"message": str(exc)})
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self.issuer.ttl_seconds}
        return _json(200, body, [("cache-control", "no-store")])


def _issue(issuer: LocalIssuer, query: Mapping[str, list[str]]) -> str:
    """The token ``/_local/token`` asks for: ``?user=`` (a user token) or ``?client=&scope=`` (a server token).

    Raises
    ------
    ValueError
        A request no identity provider would grant (the message says what is wrong).
    """
    users, clients = query.get("user", []), query.get("client", [])
    if users and clients:
        raise ValueError("give a user (a user token) or a client (a server token), not both")
    if clients:
        if len(clients) != 1:
            raise ValueError("give exactly one client: /_local/token?client=<id>&scope=<scope>")
        return issuer.issue_server(clients[0], [scope for value in query.get("scope", []) for scope in value.split()])
    if len(users) != 1:
        raise ValueError(IDP_USAGE)
    if "scope" in query:
        raise ValueError("scope is for server tokens (client=<id>): a user token has no scope")
    return issuer.issue(users[0])


# API Gateway answers preflights itself and replaces whatever CORS headers the integration sent.
_CORS_PREFIX: Final = "access-control-"


def preflight(cors: CorsConfig, origin: str) -> HttpResponse:
    """API Gateway's answer to a CORS preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``):
    204, with the configured headers only when the origin is allowed; no route, no authorizer."""
    if not cors.allows(origin):
        return HttpResponse(204)
    headers = [("access-control-allow-origin", cors.allow_origin_value(origin))]
    if cors.allow_methods:
        headers.append(("access-control-allow-methods", ",".join(cors.allow_methods)))
    if cors.allow_headers:
        headers.append(("access-control-allow-headers", ",".join(cors.allow_headers)))
    if cors.max_age is not None:
        headers.append(("access-control-max-age", str(cors.max_age)))
    if cors.allow_credentials:
        headers.append(("access-control-allow-credentials", "true"))
    return HttpResponse(204, headers)


def with_cors(response: HttpResponse, cors: CorsConfig, origin: str) -> HttpResponse:
    """A route's answer to a request with ``Origin``, with the CORS headers API Gateway adds (none for an origin
    that is not allowed; the function's own are dropped either way)."""
    response.headers = [(name, value) for name, value in response.headers if not name.lower().startswith(_CORS_PREFIX)]
    if cors.allows(origin):
        response.headers.append(("access-control-allow-origin", cors.allow_origin_value(origin)))
        if cors.expose_headers:
            response.headers.append(("access-control-expose-headers", ",".join(cors.expose_headers)))
        if cors.allow_credentials:
            response.headers.append(("access-control-allow-credentials", "true"))
    return response


def page_security_headers(port: int) -> list[tuple[str, str]]:
    """The quickstart page's own policy: its scripts and styles only from itself, its API calls to itself (opened
    as 127.0.0.1) or to 127.0.0.1 (opened as localhost), never framed, no Referer (its URL may carry a completion
    value for an instant)."""
    policy = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' http://127.0.0.1:{port}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return [
        ("content-security-policy", policy),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ]


def _json(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    return HttpResponse(status, [("content-type", "application/json"), *(headers or [])], json.dumps(payload).encode())


def b64_request_id() -> str:
    """A request id shaped like API Gateway's (``"JKJaXmPLvHcESHA="``)."""
    return secrets.token_urlsafe(10)[:14] + "="


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle holds the body until the client's delayed
    # ACK of the headers (about 40 ms on every keep-alive request).
    disable_nagle_algorithm = True
    server: ApiServer
    timeout = IDLE_CONNECTION_SECONDS

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug(format, *args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Without the query string, like the template's access log: the callback's holds the code and the state.
        # (A request line that did not parse has no path: nothing of it is logged.)
        status = code.value if isinstance(code, HTTPStatus) else code
        path = getattr(self, "path", "-").partition("?")[0]
        logger.debug('"%s %s %s" %s %s', self.command, path, self.request_version, status, size)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A request the HTTP parser refused (a malformed or over-long request line, an unknown HTTP version):
        API Gateway's kind of answer, ``{"message": ...}``, and the connection closed. Never the line itself."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # what the parser assumes of a line it could not read
            self.request_version = self.protocol_version  # answer with a status line and headers all the same
        self._send(gateway_message(code, HTTPStatus(code).phrase))

    def _dispatch(self) -> None:
        started = time.monotonic()
        path, _, query = self.path.partition("?")
        length_header = self.headers.get("content-length")
        if self.headers.get("transfer-encoding"):
            self._send(gateway_message(411, "Length Required: send a Content-Length, not chunked"))
            self.close_connection = True
            return
        try:
            length = int(length_header or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            status, message = (413, "Request Entity Too Large") if length > 0 else (400, "Bad Request")
            self._send(gateway_message(status, message))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        request = IncomingRequest(
            method=self.command,
            raw_path=path,
            raw_query=query,
            headers=tuple((name, value) for name, value in self.headers.items()),
            body=body,
            source_ip=str(self.client_address[0]),
            protocol=self.request_version,
            server_port=self.server.port,
        )
        api = self.server.api
        response = api.handle(request) if api is not None else gateway_message(503, "Service Unavailable")
        self._send(response)
        logger.info("%s %s %d %.0fms", self.command, path, response.status, (time.monotonic() - started) * 1000)

    def _send(self, response: HttpResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


class ApiServer(TrackedConnectionsMixin, ThreadingHTTPServer):
    """The HTTP listener of the local API, bound (port known) on construction and serving after :meth:`start`.

    Parameters
    ----------
    host, port
        Where to listen; port 0 picks a free one (see :attr:`port`).
    """

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, host: str = "127.0.0.1", port: int = 3000) -> None:
        self.api: LocalApi | None = None
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # TCPServer's bind (SO_REUSEADDR: a restart right after a stop finds the port free), without
        # HTTPServer's, which resolves the host name (getfqdn) and can stall on a machine without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.server_address[0]!s}:{self.port}"

    def start(self, api: LocalApi) -> None:
        """Serve ``api`` from a background thread."""
        self.api = api
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="local-api", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, end open connections (idle keep-alives included) and release the port."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.close_connections()
        self.server_close()
