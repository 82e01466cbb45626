"""The HTTP side of the server: one :class:`RequestHandler` per connection.

It reads the request body (Content-Length or chunked, capped), asks
:func:`~assisters.server.routes.route` for the endpoint, and turns an
:class:`~assisters.server.api_errors.ApiError` into OpenAI's error body. HTTP/1.1,
so connections are kept alive; ``TCP_NODELAY``, so each SSE event leaves at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

import orjson

from assisters.server.api_errors import ApiError
from assisters.server.routes import body_limit, route
from assisters.server.state import ServerState
from assisters.visible import visible

IDLE_TIMEOUT = 60.0  # seconds a silent or non-reading client may hold a handler thread
MAX_DISCARD_BYTES = 2 * 1024 * 1024 * 1024  # read and dropped, to answer a too-large upload


class RequestHandler(BaseHTTPRequestHandler):
    """Reads a request, routes it, sends the answer or the error."""

    protocol_version = "HTTP/1.1"
    server_version = "assisters-serve"
    disable_nagle_algorithm = True  # TCP_NODELAY: each SSE event leaves at once
    timeout = IDLE_TIMEOUT
    answer_headers: dict[str, str] = {}  # noqa: RUF012 - replaced per request in _dispatch, never mutated

    @property
    def state(self) -> ServerState:
        return self.server.state  # type: ignore[attr-defined, no-any-return]

    def setup(self) -> None:
        super().setup()
        self.state.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.state.untrack(self.connection)

    def version_string(self) -> str:
        """The Server header: our name only, no Python version."""
        return self.server_version

    def do_GET(self) -> None:  # the name http.server looks for
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One line per request when verbose: method, path without query, status (the
        client's text with its control characters made visible)."""
        if self.state.options.verbose:
            path = urlsplit(self.path).path
            sys.stderr.write(visible(f"{self.command} {path} {int(code)}") + "\n")

    def log_message(self, fmt: str, *args: Any) -> None:
        """Quiet unless verbose; headers (and so API keys) are never logged."""
        if self.state.options.verbose:
            sys.stderr.write(visible(fmt % args) + "\n")

    def end_headers(self) -> None:
        """The head, with the headers an endpoint gave for every answer to this request."""
        for name, value in self.answer_headers.items():
            self.send_header(name, value)
        super().end_headers()

    def _dispatch(self) -> None:
        self.answer_headers: dict[str, str] = {}  # x-request-id, x-ratelimit-*: set by the endpoint
        options = self.state.options
        try:
            body = self._read_body(*body_limit(self.command, self.path, options))
            route(self.command, self.path, options)(self, body)
        except ApiError as err:
            self._send_error(err)

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        """A complete JSON response with Content-Length, so the connection can be reused."""
        body = orjson.dumps(payload)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, err: ApiError) -> None:
        if err.close:
            self.close_connection = True
        self.send_json(err.status, err.body(), err.headers)

    def _read_body(self, limit: int, too_large: Callable[[], ApiError]) -> bytes:
        """The whole body, up to ``limit`` bytes. Past that, the error; when that error
        keeps the connection (an upload too large), a body of known length up to
        :data:`MAX_DISCARD_BYTES` is read and dropped first, so that the client, still
        sending, gets the answer; otherwise the connection is closed."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit, too_large)
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0:
            raise ApiError(400, "Invalid Content-Length header.", close=True)
        if length > limit:
            error = too_large()
            if not error.close and length <= MAX_DISCARD_BYTES:
                self._discard(length)  # the client sees the answer, not a reset while sending
            else:
                error.close = True
            raise error
        return self._read_exact(length)

    def _discard(self, length: int) -> None:
        while length > 0:
            data = self.rfile.read(min(length, 256 * 1024))
            if not data:
                raise ConnectionResetError("client closed the connection inside the body")
            length -= len(data)

    def _read_chunked(self, limit: int, too_large: Callable[[], ApiError]) -> bytes:
        parts: list[bytes] = []
        total = 0
        while size := self._chunk_size():
            total += size
            if total > limit:
                error = too_large()
                error.close = True
                raise error
            parts.append(self._read_exact(size))
            if self.rfile.readline(3).rstrip(b"\r\n"):
                raise ApiError(400, "Malformed chunked request body.", close=True)
        while self.rfile.readline(8192).rstrip(b"\r\n"):
            pass  # trailer fields, ignored
        return b"".join(parts)

    def _chunk_size(self) -> int:
        line = self.rfile.readline(1024)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            size = -1
        if size < 0:
            raise ApiError(400, "Malformed chunked request body.", close=True)
        return size

    def _read_exact(self, length: int) -> bytes:
        data = self.rfile.read(length)
        if len(data) < length:
            raise ConnectionResetError("client closed the connection inside the body")
        return data
