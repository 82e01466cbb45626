"""Exit statuses and the exceptions that carry them.

Every failure the user can cause or meet is one of these exceptions; exactly one
place (``commands.main``) turns them into a single stderr line and an exit code.

| status | meaning |
|-------:|---------|
| 0   | ok |
| 1   | unexpected internal error (traceback only with ASSISTERS_DEBUG=1) |
| 2   | usage error (bad option, no prompt, an argument that cannot be sent) |
| 3   | batch: some requests failed (OUTPUT holds an error line for each) |
| 65  | request rejected (HTTP 400, 404, 413, 422 and other 4xx; raw's body not JSON; a damaged recording; |
|     | bad batch input; a provider's batch that failed, a batch id it does not know, no Batch API) |
| 68  | host not found: the base URL's host name does not exist (not retried) |
| 69  | server error (HTTP 5xx, an error reported inside a 200 stream; a batch expired or cancelled) |
| 74  | output error: stdout cannot be written (closed, disk full, I/O error) |
| 75  | temporary failure (connect error, timeout, 408, 409, 429, stream cut before it completed; a |
|     | provider's batch still running) |
| 76  | protocol error (the reply is not HTTP, not a chat completion stream, or over a size limit) |
| 77  | authentication (HTTP 401, 403) |
| 78  | configuration (no API key or an unusable one, bad base URL, broken config file) |
| 79  | out of quota (HTTP 429 ``insufficient_quota``: the account has no credit; never retried) |
| 130 | interrupted (Ctrl-C) |
| 141 | stdout closed early (broken pipe, e.g. ``| head``): quiet, like a tool killed by SIGPIPE |
| 143 | terminated (SIGTERM): ends chat and the batch commands as Ctrl-C does (:class:`Terminated`) |
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    PARTIAL = 3
    REJECTED = 65
    NO_HOST = 68  # sysexits EX_NOHOST
    SERVER = 69
    OUTPUT = 74  # sysexits EX_IOERR
    TEMPORARY = 75
    PROTOCOL = 76
    AUTH = 77
    CONFIG = 78
    QUOTA = 79
    INTERRUPTED = 130
    BROKEN_PIPE = 141
    TERMINATED = 143


class AssistersError(Exception):
    """A failure with a one-line message for the user and an exit status.

    ``retryable`` says whether sending the same request again may succeed (when
    nothing of the answer has been shown yet); ``retry_after`` is the server's
    own wait in seconds, when it gave one; ``unsent`` that the request never left
    (no connection), so even a request that is not idempotent may be sent again.
    """

    status: ExitStatus = ExitStatus.INTERNAL
    retryable: bool = False
    unsent: bool = False  # the request surely never reached the server: resending is safe even for a POST

    def __init__(self, message: str, status: ExitStatus | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after: float | None = None
        if status is not None:
            self.status = status


class StatusOnly(AssistersError):
    """An exit status whose reason the command has already shown (``batch status``
    prints "in_progress" on stdout and exits 75): ``main`` adds no error line."""

    def __init__(self, status: ExitStatus) -> None:
        super().__init__("", status)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where a command asked for it (:func:`sigterm_interrupts`): it
    takes every way out Ctrl-C takes (temporary files removed, the resume hint said),
    and ``main`` maps it to 143 instead of 130."""


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread
    (elsewhere the block runs as it is: only the main thread takes signals)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class ConfigError(AssistersError):
    status = ExitStatus.CONFIG


class RequestError(AssistersError):
    """The request could not be built from the user's input (bad JSON, bad file), or a
    recording to replay is damaged."""

    status = ExitStatus.REJECTED


class ProtocolError(AssistersError):
    status = ExitStatus.PROTOCOL


class LimitError(ProtocolError):
    """A reply over one of the size limits that keep memory bounded: an SSE line or
    event, a body, a compression ratio. The message names the limit."""


class OutputError(AssistersError):
    """stdout cannot be written (closed, disk full, an I/O error); a broken pipe is not
    one of these: it ends quietly with 141."""

    status = ExitStatus.OUTPUT


class HostNotFound(AssistersError):
    """The base URL's host name does not exist (DNS says so): sending again cannot help."""

    status = ExitStatus.NO_HOST


class TemporaryError(AssistersError):
    """A connection failure or a timeout: trying again may work."""

    status = ExitStatus.TEMPORARY
    retryable = True


class TimeoutFailure(TemporaryError):
    """One of the timeouts fired; the message names it, its value and how to raise it."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class IncompleteStream(TemporaryError):
    """The stream ended (or broke) before the answer was complete."""


class HTTPStatusError(AssistersError):
    """A non-2xx answer; the message is the server's own where it gave one.

    ``body`` is the start of the server's error body (``ERROR_BODY_LIMIT`` bytes at
    most) and ``code`` its ``error.code`` (``insufficient_quota``, ...), for callers
    that keep or classify the answer (``batch run`` writes it to OUTPUT).
    """

    def __init__(self, http_status: int, message: str, *, body: bytes = b"", code: str | None = None) -> None:
        super().__init__(message, status_for_http(http_status))
        self.http_status = http_status
        self.body = body
        self.code = code
        self.retryable = http_status in RETRYABLE_HTTP
        if code == QUOTA_CODE:  # out of credit: waiting does not help, and it is the account's
            self.status = ExitStatus.QUOTA
            self.retryable = False


class StreamError(AssistersError):
    """An error the server reported inside a successful (2xx) response."""

    def __init__(self, message: str, http_status: int | None = None) -> None:
        status = status_for_http(http_status) if http_status else ExitStatus.SERVER
        super().__init__(message, status)
        self.retryable = http_status in RETRYABLE_HTTP


# Worth sending again: timeouts, conflicts, rate limits and overloaded or restarting
# servers. 400, 401, 403, 404, 413 and 422 would fail the same way every time.
RETRYABLE_HTTP = frozenset({408, 409, 429, 500, 502, 503, 504})
# The error code of a 429 that means "the account has no credit", not "slow down" (OpenAI's).
QUOTA_CODE = "insufficient_quota"


def status_for_http(code: int) -> ExitStatus:
    """Map an HTTP status code to the exit status a script can branch on."""
    if code in (401, 403):
        return ExitStatus.AUTH
    if code in (408, 409, 425, 429):
        return ExitStatus.TEMPORARY
    if 400 <= code < 500:
        return ExitStatus.REJECTED
    if 500 <= code < 600:
        return ExitStatus.SERVER
    return ExitStatus.PROTOCOL
