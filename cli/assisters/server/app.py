"""The local server as a whole: :class:`ChatServer` starts, serves and stops it.

Start it in the background for tests and ``--base-url local``
(``with ChatServer(options) as server``), or in the foreground for ``assisters serve``.
"""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from assisters.server.handler import RequestHandler
from assisters.server.options import ServeOptions
from assisters.server.state import ServerState

POLL_INTERVAL = 0.05  # upper bound on how long shutdown() waits for the accept loop


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that holds the shared state and keeps client hang-ups quiet."""

    daemon_threads = True
    block_on_close = False  # shutdown() closes the connections itself; never hang on them

    def __init__(self, address: tuple[str, int], state: ServerState) -> None:
        self.state = state
        super().__init__(address, RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn): slow offline, unused.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away: nothing to report
        super().handle_error(request, client_address)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class ChatServer:
    """The local server: start it in the background for tests, or in the foreground.

    The counters of :class:`~assisters.server.state.ServerState` (``requests_seen``,
    ``streams_seen``, ``disconnects``, ``active_streams``) are readable here; tests
    assert on them.
    """

    def __init__(self, options: ServeOptions) -> None:
        if options.replay is not None and not Path(options.replay).is_file():
            raise FileNotFoundError(f"replay file not found: {options.replay}")
        self.options = options
        self.state = ServerState(options)
        self._thread: threading.Thread | None = None
        self._started = False
        self._closed = False
        server_class = _HTTPServer6 if ":" in options.host else _HTTPServer
        self._httpd = server_class((options.host, options.port), self.state)

    @property
    def requests_seen(self) -> int:
        return self.state.requests_seen

    @property
    def streams_seen(self) -> int:
        return self.state.streams_seen

    @property
    def disconnects(self) -> int:
        return self.state.disconnects

    @property
    def active_streams(self) -> int:
        return self.state.active_streams

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The URL to give a client, e.g. ``http://127.0.0.1:PORT/v1``."""
        host = str(self._httpd.server_address[0])
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/v1"

    def serve_forever(self) -> None:
        """Serve in this thread until shutdown() is called from another one (or Ctrl-C)."""
        self._started = True
        self._httpd.serve_forever(poll_interval=POLL_INTERVAL)

    def start_background(self) -> None:
        """Serve from a daemon thread, so a test or benchmark can be the client."""
        if self._started:
            raise RuntimeError("the server is already running")
        self._started = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL},
            name=f"assisters-serve-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def shutdown(self) -> None:
        """Stop accepting, end streams and idle connections, close the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.state.stopping.set()
        if self._started:
            self._httpd.shutdown()
        self.state.close_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.state.close()

    def __enter__(self) -> ChatServer:
        self.start_background()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
