"""The httpx client, and transport failures (connect, timeouts, broken connections) as errors.

Requests are sent by :func:`assisters.exchange.open_exchange`, a context manager
around ``httpx.Client.stream``: closing a response that was not read to the end
closes its connection, which is how the server learns to stop generating.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import httpx

from assisters import __version__
from assisters.answer import one_line
from assisters.config import Settings
from assisters.errors import AssistersError, ProtocolError, TemporaryError, TimeoutFailure
from assisters.redact import redact_url


def make_client(settings: Settings, *, connections: int | None = None) -> httpx.Client:
    """An httpx client with the key, the timeouts and our User-Agent.

    ``connections`` is how many requests it carries at once (``batch run -j``):
    that many connections, all kept alive between requests; None keeps httpx's limits.
    """
    headers = {"User-Agent": f"assisters/{__version__}"}
    if settings.api_key:
        headers["Authorization"] = f"Bearer {settings.api_key.reveal()}"
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


def transport_error(exc: httpx.HTTPError, url: str) -> AssistersError:
    """A one-line error for a failed connection; never includes headers (the key)."""
    where = redact_url(url)
    if isinstance(exc, httpx.ConnectTimeout):
        return TimeoutFailure(f"timed out connecting to {where} (connect timeout{_limit(exc, 'connect')}); "
                              "raise it with --connect-timeout or ASSISTERS_CONNECT_TIMEOUT")
    if isinstance(exc, httpx.ConnectError):
        return TemporaryError(f"cannot connect to {where}: {_reason(exc)}")
    if isinstance(exc, httpx.ReadTimeout):
        return TimeoutFailure(f"no data from {where} for too long (read timeout{_limit(exc, 'read')}); "
                              "raise it with --first-byte-timeout or --idle-timeout")
    if isinstance(exc, httpx.TimeoutException):
        return TemporaryError(f"timed out talking to {where}")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return TemporaryError(f"the connection to {where} broke: {_reason(exc)}")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ProtocolError(f"unsupported URL: {where}")
    return TemporaryError(f"HTTP failure talking to {where}: {_reason(exc)}")


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

