"""What every request handler of one server shares: the options, the counters
tests assert on, the stop signal and the open connections.

Endpoints that keep data (the Files and Batches API of the batch issue, the
rate-limit scripts) keep it here too, behind the same lock.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from assisters.server.options import ServeOptions
from assisters.server.rate_limit import AccountLimits


class ServerState:
    """``requests_seen`` counts chat requests received, ``streams_seen`` the streaming
    answers begun (the count ``drop_times`` uses), ``disconnects`` the streams the
    client abandoned, ``active_streams`` the streams in progress."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.requests_seen = 0
        self.streams_seen = 0
        self.disconnects = 0
        self.active_streams = 0
        self.connections_opened = 0  # a client that reuses its connections keeps this low
        self.stopping = threading.Event()
        self.limits = AccountLimits(options)  # rate limits, quota, overload; what each prompt was sent
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()

    def note_request(self) -> int:
        """Count a chat request; its 1-based number decides whether a failure is injected."""
        with self._lock:
            self.requests_seen += 1
            return self.requests_seen

    def note_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1

    def stream_started(self) -> int:
        """Count a streaming answer; its 1-based number decides whether it may be cut."""
        with self._lock:
            self.active_streams += 1
            self.streams_seen += 1
            return self.streams_seen

    def stream_ended(self) -> None:
        with self._lock:
            self.active_streams -= 1

    def track(self, connection: socket.socket) -> None:
        with self._lock:
            self.connections_opened += 1
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Wake handlers blocked reading an idle keep-alive connection or writing a stream."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
