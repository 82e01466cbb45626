"""Fault injection: the failures ``serve`` produces on demand.

* HTTP failures before any answer (:func:`injected_failure`: ``--fail-status``,
  ``--fail-times``, ``--retry-after``; :func:`context_overflow`: ``--context-length``),
  and the same for the Files and Batches API (:func:`injected_api_failure`:
  ``--api-fail-status``, ``--api-fail-times``);
* faults inside a stream (:class:`StreamFaults`: ``--drop-after``,
  ``--drop-after-bytes``, ``--drop-times``, ``--stall-after``, ``--malformed-at``),
  and how a connection is cut (:func:`cut_connection`: a FIN, or with ``--reset``
  an RST).

A new fault: an option in :class:`~assisters.server.options.ServeOptions` (checked
there), its decision here, and the place it applies in
:mod:`~assisters.server.event_stream` or :mod:`~assisters.server.chat`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time

from assisters.server.api_errors import ApiError
from assisters.server.options import ServeOptions


def injected_failure(options: ServeOptions, number: int) -> ApiError | None:
    """The error chat request ``number`` (1-based) must get, if the options ask for one."""
    return _failure(options.fail_status, options.fail_times, options.retry_after, number)


def injected_api_failure(options: ServeOptions, number: int) -> ApiError | None:
    """The error Files/Batches API request ``number`` (1-based) must get (``--api-fail-status``):
    how a client's polling meets a rate limit or an outage of the management endpoints."""
    return _failure(options.api_fail_status, options.api_fail_times, options.retry_after, number)


def _failure(status: int | None, times: int, retry_after: float | None, number: int) -> ApiError | None:
    if status is None or (times and number > times):
        return None
    which = f"{number} of {times}" if times else f"request {number}"
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = _format_seconds(retry_after)
    type_, code = "invalid_request_error", None
    if status >= 500:
        type_ = "server_error"
    elif status == 429:
        type_, code = "requests", "rate_limit_exceeded"
    message = f"Injected failure: HTTP {status} ({which})"
    return ApiError(status, message, type_=type_, code=code, headers=headers)


def context_overflow(options: ServeOptions, prompt_tokens: int) -> ApiError | None:
    """A prompt longer than ``--context-length``, refused in OpenAI's words and code."""
    limit = options.context_length
    if limit is None or prompt_tokens <= limit:
        return None
    message = (f"This model's maximum context length is {limit} tokens. However, your messages resulted "
               f"in {prompt_tokens} tokens. Please reduce the length of the messages.")
    return ApiError(400, message, param="messages", code="context_length_exceeded")


def _format_seconds(seconds: float) -> str:
    """Whole seconds as an integer (what RFC 9110 allows), fractions as a decimal."""
    return str(int(seconds)) if seconds == int(seconds) else f"{seconds:g}"



class StreamFaults:
    """The faults one stream applies; ``may_drop`` is false for streams past ``drop_times``."""

    def __init__(self, options: ServeOptions, may_drop: bool) -> None:
        self._options = options
        self._may_drop = may_drop  # drop_after and drop_after_bytes apply to this stream
        self._stalled = False

    def byte_budget(self, body_sent: int) -> int | None:
        """How many more body bytes may go out before the cut, if one is due."""
        limit = self._options.drop_after_bytes
        if limit is None or not self._may_drop:
            return None
        return max(limit - body_sent, 0)

    def malformed(self, content_number: int) -> bool:
        """Whether content chunk ``content_number`` (1-based) is sent as invalid JSON."""
        return content_number == self._options.malformed_at

    def stall_due(self, content_sent: int) -> float:
        """Seconds to pause now (once per stream, after ``stall_after`` content chunks)."""
        stall_after = self._options.stall_after
        if stall_after is not None and not self._stalled and content_sent >= stall_after:
            self._stalled = True
            return self._options.stall_seconds
        return 0.0

    def drop_due(self, content_sent: int) -> bool:
        drop_after = self._options.drop_after
        return drop_after is not None and self._may_drop and content_sent >= drop_after


def cut_connection(connection: socket.socket, *, reset: bool, stopping: threading.Event) -> None:
    """Cut a connection as a failing server would.

    A FIN without the terminating chunk: the client sees a truncated chunked body.
    With ``reset``, an RST instead: the client sees "connection reset by peer".
    """
    with contextlib.suppress(OSError):
        if reset:
            _wait_sent(connection, stopping)
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # close() would wait for the handler's file objects; detach and close the
            # descriptor now. The socket object is left closed, so nothing reuses it.
            os.close(connection.detach())
        else:
            connection.shutdown(socket.SHUT_RDWR)


def _wait_sent(connection: socket.socket, stopping: threading.Event, limit: float = 1.0) -> None:
    """Give the bytes already written a moment to leave: an RST discards the rest."""
    try:  # Linux and the BSDs; elsewhere, no wait
        import fcntl
        import termios

        outq = termios.TIOCOUTQ
    except (ImportError, AttributeError):
        return
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not stopping.is_set():
        pending = fcntl.ioctl(connection.fileno(), outq, b"\0\0\0\0")
        if not struct.unpack("i", pending)[0]:
            return
        time.sleep(0.001)
