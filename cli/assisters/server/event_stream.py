"""One streamed answer: a chunked ``text/event-stream`` body, each event sent and
flushed at once, with the streaming faults of :mod:`assisters.server.faults` applied
at the points they are defined by (content chunks, body bytes)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from email.message import Message
from typing import Any, BinaryIO, NoReturn, Protocol

import orjson

from assisters.server.faults import StreamFaults, cut_connection
from assisters.server.options import ServeOptions
from assisters.server.state import ServerState

_MALFORMED_EVENT = b'data: {"choices": [\n\n'


class Responder(Protocol):
    """What an endpoint needs of the request handler (see :mod:`assisters.server.handler`)."""

    state: ServerState
    wfile: BinaryIO
    connection: socket.socket
    close_connection: bool
    path: str  # as requested, with the query string
    headers: Message  # the request's
    answer_headers: dict[str, str]  # sent with whatever answer the request gets

    def send_response(self, code: int, message: str | None = None) -> None: ...

    def send_header(self, keyword: str, value: str) -> None: ...

    def end_headers(self) -> None: ...

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None: ...


class StreamAborted(Exception):
    """The stream ended early on purpose (drop) or because the client or server left."""


class EventStream:
    """One chunked ``text/event-stream`` response, each event sent and flushed at once.

    It also applies the streaming faults, because they are defined in terms of the
    content chunks that pass through here.
    """

    def __init__(self, handler: Responder, may_drop: bool = True) -> None:
        self._handler = handler
        self._state = handler.state
        self._options = handler.state.options
        self._faults = StreamFaults(self._options, may_drop)
        self.content_sent = 0
        self.body_sent = 0  # SSE bytes, not counting the chunked framing

    @property
    def options(self) -> ServeOptions:
        return self._options

    def open(self, status: int = 200, reason: str | None = None,
             headers: list[tuple[str, str]] | None = None) -> None:
        handler = self._handler
        handler.send_response(status, reason)
        if headers is None:
            headers = [("Content-Type", "text/event-stream; charset=utf-8"),
                       ("Cache-Control", "no-cache")]
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Transfer-Encoding", "chunked")
        self._guarded(handler.end_headers)
        if self._faults.byte_budget(self.body_sent) == 0:
            self.drop()

    def write(self, data: bytes) -> None:
        """Send ``data`` as one HTTP chunk (the wfile is unbuffered: it goes out now).

        With ``drip_ms`` each byte is a chunk of its own, ``drip_ms`` apart; with
        ``drop_after_bytes`` the connection is cut once exactly that many body bytes
        are out, even in the middle of ``data``.
        """
        budget = self._faults.byte_budget(self.body_sent)
        cut = budget is not None and len(data) >= budget
        if budget is not None:
            data = data[:budget]
        drip = self._options.drip_ms
        if drip is None:
            self._send(data)
        else:
            for i in range(len(data)):
                if self.body_sent:
                    self.pause(drip / 1000)
                self._send(data[i : i + 1])
        if cut:
            self.drop()

    def _send(self, data: bytes) -> None:
        if data:  # an empty chunk would end the body
            self._guarded(self._handler.wfile.write, b"%x\r\n%s\r\n" % (len(data), data))
            self.body_sent += len(data)

    def event(self, payload: dict[str, Any]) -> None:
        self.write(b"data: " + orjson.dumps(payload) + b"\n\n")

    def content(self, payload: dict[str, Any]) -> None:
        """A token chunk: the unit drop_after, stall_after and malformed_at count."""
        self.checkpoint()
        self.content_sent += 1
        if self._faults.malformed(self.content_sent):
            self.write(_MALFORMED_EVENT)
        else:
            self.event(payload)

    def checkpoint(self) -> None:
        """Stall or drop here if that many content chunks are out."""
        self.pause(self._faults.stall_due(self.content_sent))
        if self._faults.drop_due(self.content_sent):
            self.drop()

    def pause(self, seconds: float) -> None:
        """Sleep, but wake up and give up at once when the server shuts down."""
        if seconds > 0 and self._state.stopping.wait(seconds):
            self._handler.close_connection = True
            raise StreamAborted

    def end(self) -> None:
        """The zero-length chunk that tells the client the body is complete."""
        self._guarded(self._handler.wfile.write, b"0\r\n\r\n")

    def drop(self) -> NoReturn:
        """Cut the connection now, as a failing server would."""
        self._handler.close_connection = True
        cut_connection(self._handler.connection, reset=self._options.reset, stopping=self._state.stopping)
        raise StreamAborted

    def _guarded(self, send: Callable[..., object], *args: object) -> None:
        try:
            send(*args)
        except OSError:  # BrokenPipe, ConnectionReset, timeout: the client is gone
            self._handler.close_connection = True
            if not self._state.stopping.is_set():
                self._state.note_disconnect()
            raise StreamAborted from None
