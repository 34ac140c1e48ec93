"""moto's server without the whole-table copy its DynamoDB makes for every item of a TransactWriteItems.

moto 5 backs up a transaction's table with ``copy.deepcopy`` once per item it writes, to roll back a failed
transaction: a 100-item transaction into a table of 20,000 items copies 2 million items, so a sync of 10,000
transactions (200 such transactions) would run for hours and measure moto. This server keeps the table as it is
instead; a failed transaction is then not rolled back. ``bench.sync`` uses it (its transactions have no
condition to fail); every other benchmark runs moto as shipped.

``--keep-alive`` serves moto's application over HTTP/1.1 connections that stay open, as DynamoDB's do, instead of
werkzeug's server, which closes every connection after one answer: a client then opens a TCP connection per call,
CPU that a Lambda function talking to DynamoDB over its kept-alive connection does not spend. ``bench.warm`` uses it
(the table copy is skipped there too). Each request body is read whole (``Content-Length``; a chunked request
closes its connection) and each answer sent with its ``Content-Length``.

Usage: python -m bench.moto_server [--keep-alive] -H 127.0.0.1 -p PORT (``moto.server``'s arguments)
"""

from __future__ import annotations

import argparse
import copy
import io
import sys
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from types import SimpleNamespace
from typing import Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from moto import server
from moto.dynamodb import models
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """``copy.deepcopy``, except a whole table (the rollback copy), which is kept as it is."""
    return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _buffered(app: WsgiApp) -> WsgiApp:
    """``app`` with its request body read whole before it runs and its answer sent in one piece with its length."""

    def run(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(length) if length else b"")
        answer: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            answer.update(status=status, headers=headers)
            return lambda _data: None

        chunks = app(environ, keep)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        drop = {"content-length", "transfer-encoding", "connection"}
        headers = [(name, value) for name, value in answer["headers"] if name.lower() not in drop]
        start_response(answer["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    return run


class _KeepAliveHandler(WSGIRequestHandler):
    """wsgiref's handler, serving requests on one connection until the client closes it."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes: no 40 ms delayed-ACK stall

    def handle(self) -> None:
        while True:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline or len(self.raw_requestline) > 65536 or not self.parse_request():
                return
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self.close_connection = True  # its body is not read here: the connection cannot be reused
            output: Any = self.wfile
            handler = ServerHandler(self.rfile, output, self.get_stderr(), self.get_environ(), multithread=True)
            handler.http_version = "1.1"
            handler.request_handler = self  # type: ignore[attr-defined]
            handler.run(self.server.get_app())  # type: ignore[attr-defined]
            if self.close_connection:
                return

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the overridden signature
        """Quiet, as ``bench.harness`` discards the server's output anyway."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def serve_keep_alive(host: str, port: int) -> None:
    """moto's application on ``host:port`` over kept-alive HTTP/1.1 connections, until the process is stopped."""
    app = DomainDispatcherApplication(create_backend_app)
    with _ThreadingServer((host, port), _KeepAliveHandler) as httpd:
        httpd.set_app(_buffered(app))
        httpd.serve_forever()


def main() -> None:
    models.copy = SimpleNamespace(deepcopy=_deepcopy, copy=copy.copy)  # type: ignore[assignment,attr-defined]
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--keep-alive", action="store_true")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    known, rest = parser.parse_known_args(sys.argv[1:])
    if known.keep_alive:
        serve_keep_alive(known.host, known.port)
    else:
        server.main(["-H", known.host, "-p", str(known.port), *rest])


if __name__ == "__main__":
    main()
