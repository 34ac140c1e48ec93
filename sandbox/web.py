"""A small HTTP/1.1 server on the standard library: threads per connection, keep-alive, TLS with client certificates.

``http.server`` does the parsing; this module adds what the sandbox needs and the stdlib server lacks:

* the TLS handshake runs in the connection's own thread (a slow or failing client never blocks ``accept``);
* the verified client certificate is read once per connection and turned into the TPP identity
  (``organizationIdentifier`` of the subject, else its common name);
* each response goes out in one write (status line, headers and body), which keeps TLS records and syscalls low;
* :meth:`HttpServer.stop` closes idle keep-alive connections, so stopping never waits on a client.

Applications implement :class:`App` and see only :class:`Request` / :class:`Response`.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger("sandbox")

MAX_BODY_BYTES = 1_048_576
HANDSHAKE_TIMEOUT_SECONDS = 10.0
IDLE_TIMEOUT_SECONDS = 120.0
JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
HTML_CONTENT_TYPE = "text/html;charset=UTF-8"
_ORG_ID = "organizationIdentifier"
_COMMON_NAME = "commonName"


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One HTTP request as the applications see it.

    ``target`` is the request-target exactly as received (what a signature's ``(request-target)`` covers);
    ``headers`` are keyed by lower-case name; ``client_id`` is the identity of the verified TLS client certificate.
    """

    method: str
    target: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    client_ip: str
    client_id: str | None
    origin: str

    @property
    def url(self) -> str:
        """Absolute URL of the request, for signature verification."""
        return f"{self.origin}{self.target}"

    def header(self, name: str) -> str | None:
        """Header value by case-insensitive name."""
        return self.headers.get(name.lower())

    def form(self) -> dict[str, str]:
        """The ``application/x-www-form-urlencoded`` body, first value of each field."""
        fields = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {name: values[0] for name, values in fields.items()}


@dataclass(slots=True)
class Response:
    """What an application answers. ``drop_connection`` closes the socket without writing anything."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop_connection: bool = False


def json_response(status: int, payload: Any, *, headers: list[tuple[str, str]] | None = None) -> Response:
    """Serialise ``payload`` compactly as UTF-8 JSON."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(status, body, [("Content-Type", JSON_CONTENT_TYPE), *(headers or [])])


def html_response(status: int, html: str) -> Response:
    """An HTML page that browsers must not cache."""
    return Response(
        status,
        html.encode(),
        [("Content-Type", HTML_CONTENT_TYPE), ("Cache-Control", "no-store"), ("X-Frame-Options", "DENY")],
    )


def redirect(location: str) -> Response:
    """A 302 to ``location``."""
    return Response(HTTPStatus.FOUND, b"", [("Location", location), ("Cache-Control", "no-store")])


class App(Protocol):
    """An application served by :class:`HttpServer`."""

    def handle(self, request: Request) -> Response:
        """Answer one request (never raises for a client error)."""
        ...


def certificate_identity(peer: Mapping[str, Any] | None) -> str | None:
    """The TPP identity in a verified peer certificate: ``organizationIdentifier``, else the common name."""
    if not peer:
        return None
    found: dict[str, str] = {}
    for rdn in peer.get("subject", ()):
        for name, value in rdn:
            found.setdefault(name, value)
    return found.get(_ORG_ID) or found.get(_COMMON_NAME)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "89C3-Sandbox"
    sys_version = ""
    timeout = IDLE_TIMEOUT_SECONDS
    server: HttpServer

    def setup(self) -> None:
        super().setup()
        conn = self.connection
        self.client_id = certificate_identity(conn.getpeercert()) if isinstance(conn, ssl.SSLSocket) else None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if length < 0 or length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self._write(json_response(HTTPStatus.BAD_REQUEST, {"status": 400, "message": "Unreadable request body"}))
            return
        parts = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
        request = Request(
            method=self.command,
            target=self.path,
            path=parts.path,
            query=query,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            client_ip=self.client_address[0],
            client_id=self.client_id,
            origin=self.server.origin,
        )
        try:
            response = self.server.app.handle(request)
        except Exception:
            logger.exception("unhandled error in sandbox application")
            response = json_response(HTTPStatus.INTERNAL_SERVER_ERROR, {"status": 500, "message": "INTE"})
        if response.drop_connection:
            self.close_connection = True
            return
        self._write(response)

    def _write(self, response: Response) -> None:
        head = [f"HTTP/1.1 {response.status} {_reason(response.status)}"]
        if not any(name.lower() == "date" for name, _ in response.headers):  # a signed answer dates itself
            head.append(f"Date: {formatdate(usegmt=True)}")
        head += [f"Server: {self.server_version}", f"Content-Length: {len(response.body)}"]
        head.extend(f"{name}: {value}" for name, value in response.headers)
        if self.close_connection:
            head.append("Connection: close")
        payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            payload += response.body
        self.wfile.write(payload)


class HttpServer(ThreadingHTTPServer):
    """Threaded HTTP/1.1 server serving one :class:`App`, optionally over TLS.

    Parameters
    ----------
    address
        ``(host, port)``; port 0 picks a free port (see :attr:`port`).
    app
        The application.
    ssl_context
        Server-side TLS context, or ``None`` for plain HTTP.
    origin_host
        Host name of :attr:`origin` when it differs from the bound address (bound to ``0.0.0.0``, reached at
        ``127.0.0.1``).
    """

    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        app: App,
        ssl_context: ssl.SSLContext | None = None,
        *,
        origin_host: str | None = None,
    ) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        scheme = "https" if ssl_context is not None else "http"
        named = origin_host or self.host
        host = f"[{named}]" if ":" in named else named
        self.origin = f"{scheme}://{host}:{self.port}"

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can stall on a machine without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def host(self) -> str:
        """Bound address."""
        return str(self.server_address[0])

    @property
    def port(self) -> int:
        """Bound port (useful with port 0)."""
        return int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        conn: socket.socket = request
        # Without TCP_NODELAY, Nagle's algorithm holds the tail of a response (or the TLS session tickets) until
        # the client's delayed ACK: 40 ms lost on most calls.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            conn.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
            try:
                conn = self.ssl_context.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                logger.debug("tls handshake failed: %s", exc)
                return
        with self._connections_lock:
            self._connections.add(conn)
        try:
            _Handler(conn, client_address, self)
        except (ConnectionError, TimeoutError, ssl.SSLError) as exc:
            logger.debug("connection ended: %s", exc)
        finally:
            with self._connections_lock:
                self._connections.discard(conn)
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.exception("error serving %s", client_address)

    def start(self, name: str) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.2}, name=name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close every open connection and release the port."""
        if self._thread is not None:
            self.shutdown()
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                logger.debug("connection already closed")
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
