"""A socketserver mixin that remembers open client connections so a stop can close them.

``ThreadingHTTPServer``'s ``shutdown()`` stops accepting but leaves keep-alive handler threads blocked on their
sockets; shutting those sockets down lets the threads end and the port be reused at once.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

logger = logging.getLogger(__name__)


class TrackedConnectionsMixin:
    """Mix in before a ``socketserver`` server class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)  # type: ignore[misc]

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)  # type: ignore[misc]

    def close_connections(self) -> None:
        """Shut down every client connection still open."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                logger.debug("connection already closed")
