"""Start and stop: shutdown closes the socket and ends streams in progress.

Over real loopback sockets. Timing is only ever checked with a generous lower
bound, never an upper one, so a slow machine cannot make them flaky.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.server.helpers import user


def test_shutdown_closes_the_socket() -> None:
    srv = ChatServer(ServeOptions())
    srv.start_background()
    port = srv.port
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    srv.shutdown()
    srv.shutdown()  # idempotent
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_shutdown_ends_a_stalled_stream() -> None:
    """shutdown() must not wait for a long stall or a lingering keep-alive connection."""
    body = {"model": "echo", "messages": user("a b"), "stream": True}
    with httpx.Client(timeout=10) as c:
        srv = ChatServer(ServeOptions(stall_after=1, stall_seconds=60))
        srv.start_background()
        with c.stream("POST", f"{srv.base_url}/chat/completions", json=body) as r:
            pieces = r.iter_raw()
            first = next(pieces)
            srv.shutdown()
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in pieces:
                    pass
    assert first.startswith(b"data: ")
    assert srv.disconnects == 0
