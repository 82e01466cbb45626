"""The httpx client, and transport failures (connect, timeouts, broken connections) as errors.

Requests are sent by :func:`assisters.exchange.open_exchange`, a context manager
around ``httpx.Client.stream``: closing a response that was not read to the end
closes its connection, which is how the server learns to stop generating.
"""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

import httpx

from assisters import __version__
from assisters.config import Settings
from assisters.errors import AssistersError, HostNotFound, ProtocolError, TemporaryError, TimeoutFailure
from assisters.redact import redact_url
from assisters.visible import one_line


def make_client(settings: Settings, *, connections: int | None = None) -> httpx.Client:
    """An httpx client with the key, the timeouts and our User-Agent.

    ``connections`` is how many requests it carries at once (``batch run -j``):
    that many connections, all kept alive between requests; None keeps httpx's limits.
    The base URL never holds user info (:mod:`assisters.config` refuses it), so
    httpx never swaps the key for Basic auth."""
    headers = {"User-Agent": f"assisters/{__version__}"}
    auth = settings.auth()  # Authorization: Bearer KEY, or the bare key under auth_header (api-key)
    if auth is not None:
        headers[auth[0]] = auth[1]
    # The watchdog (assisters.deadline) enforces the first-byte, idle and total
    # timeouts; httpx's read timeout is only the backstop where it cannot run.
    backstop = max(settings.first_byte_timeout, settings.idle_timeout) + 1.0
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=backstop,
        write=settings.idle_timeout,
        pool=settings.connect_timeout,
    )
    verify: ssl.SSLContext | bool = True
    if urlsplit(settings.base_url).scheme == "http":
        # Plain http never does TLS (redirects are not followed), so skip loading the
        # CA bundle (about 20 ms); a context with no CAs would refuse any certificate.
        verify = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    limits = httpx.Limits()
    if connections:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.Client(headers=headers, timeout=timeout, follow_redirects=False, verify=verify,
                        limits=limits)


# getaddrinfo's answers that mean "this name does not exist" (NXDOMAIN, no address
# records): a mistyped host, which no retry will fix. EAI_AGAIN ("temporary failure in
# name resolution": no network, a resolver timing out) stays a temporary failure.
_NO_SUCH_HOST = frozenset(code for code in (getattr(socket, "EAI_NONAME", None),
                                            getattr(socket, "EAI_NODATA", None)) if code is not None)


def transport_error(exc: httpx.HTTPError, url: str, *, answered: bool = True) -> AssistersError:
    """A one-line error for a failed connection; never includes headers (the key).

    ``answered`` says whether the response head had arrived: before it, a reply the
    HTTP parser refuses (no status line, a bad status code, a head too large) is not
    HTTP at all (76, not retried); after it, a broken body is a broken connection (75).
    """
    where = redact_url(url)
    error: AssistersError
    if isinstance(exc, httpx.ConnectTimeout):
        error = TimeoutFailure(f"timed out connecting to {where} (connect timeout{_limit(exc, 'connect')}); "
                               "raise it with --connect-timeout or ASSISTERS_CONNECT_TIMEOUT")
        error.unsent = True
        return error
    if isinstance(exc, httpx.ConnectError):
        lookup = _cause(exc, socket.gaierror)
        if lookup is not None and lookup.errno in _NO_SUCH_HOST:
            host = urlsplit(url).hostname or where
            reason = one_line(str(getattr(lookup, "strerror", None) or lookup), 160)
            return HostNotFound(f"cannot find the host {host!r} ({reason}); check the base URL")
        error = TemporaryError(f"cannot connect to {where}: {_reason(exc)}")
        error.unsent = True
        return error
    if isinstance(exc, httpx.ReadTimeout):
        return TimeoutFailure(f"no data from {where} for too long (read timeout{_limit(exc, 'read')}); "
                              "raise it with --first-byte-timeout or --idle-timeout")
    if isinstance(exc, httpx.TimeoutException):
        return TemporaryError(f"timed out talking to {where}")
    if isinstance(exc, httpx.RemoteProtocolError) and not answered and _refused_by_parser(exc):
        reason = _reason(exc)
        if reason == "Receive buffer too long":  # h11's words for a head over httpcore's limit
            reason = "the response head is too long"
        return ProtocolError(f"the server at {where} did not send a valid HTTP response "
                             f"({reason}); check the base URL")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return TemporaryError(f"the connection to {where} broke: {_reason(exc)}")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ProtocolError(f"unsupported URL: {where}")
    return TemporaryError(f"HTTP failure talking to {where}: {_reason(exc)}")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    return next((e for e in _chain(exc) if isinstance(e, kind)), None)


def _refused_by_parser(exc: BaseException) -> bool:
    """The HTTP/1.1 parser (h11) refused what came back, as opposed to the connection
    closing before any reply ("Server disconnected without sending a response": a
    stale keep-alive connection, worth a retry)."""
    return any(type(e).__module__.split(".")[0] == "h11" for e in _chain(exc))


def _limit(exc: httpx.TimeoutException, which: str) -> str:
    """`` of N s`` from the request's own timeout setting, when it can be found."""
    try:
        value = exc.request.extensions.get("timeout", {}).get(which)
    except RuntimeError:  # no request attached
        return ""
    return f" of {value:g} s" if isinstance(value, (int, float)) else ""


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return one_line(text, 160)

