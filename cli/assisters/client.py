"""The HTTP side: the httpx client, and HTTP and transport failures as exit statuses.

Requests are sent by :func:`assisters.exchange.open_exchange`, a context manager
around ``httpx.Client.stream``: closing a response that was not read to the end
closes its connection, which is how the server learns to stop generating.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from assisters import __version__
from assisters.answer import error_message, one_line, parse_json
from assisters.config import Settings, redact_url
from assisters.errors import AssistersError, HTTPStatusError, ProtocolError, TemporaryError, TimeoutFailure

if TYPE_CHECKING:
    from assisters.exchange import ResponseHead

ERROR_BODY_LIMIT = 64 * 1024


@dataclass
class Timing:
    """Monotonic clock readings of one exchange, in seconds."""

    start: float = field(default_factory=time.perf_counter)
    headers: float | None = None
    first_byte: float | None = None
    first_token: float | None = None
    end: float | None = None

    def since_start(self, when: float | None) -> float | None:
        return None if when is None else when - self.start

    def tokens_per_second(self, completion_tokens: object) -> float | None:
        """Generation speed: the tokens after the first, over the time after it."""
        if not isinstance(completion_tokens, int) or completion_tokens < 2:
            return None
        if self.first_token is None or self.end is None or self.end <= self.first_token:
            return None
        return (completion_tokens - 1) / (self.end - self.first_token)


def make_client(settings: Settings) -> httpx.Client:
    """An httpx client with the key, the timeouts and our User-Agent."""
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
    return httpx.Client(headers=headers, timeout=timeout, follow_redirects=False, verify=verify)


def status_error(head: ResponseHead, body: bytes) -> HTTPStatusError:
    """The error for a non-2xx response, worded from its body where it can be."""
    code = head.status
    message = error_message(parse_json(body))
    if message:
        text = f"HTTP {code}: {one_line(message, 400)}"
    else:
        excerpt = one_line(body.decode("utf-8", "replace"), 80)
        text = f"HTTP {code} {head.reason}".rstrip() + (f": {excerpt}" if excerpt else "")
    location = head.header("location")
    if 300 <= code < 400 and location:
        text += f" (redirect to {redact_url(location)}; check the base URL)"
    retry_after = retry_after_seconds(head)
    if retry_after is not None:
        text += f" (retry after {retry_after:g} s)"
    error = HTTPStatusError(code, text)
    error.retry_after = retry_after
    return error


def retry_after_seconds(head: ResponseHead, now: float | None = None) -> float | None:
    """The server's requested wait: ``retry-after-ms``, else ``Retry-After`` as
    seconds or an HTTP date; ``None`` when absent or unreadable."""
    millis = head.header("retry-after-ms").strip()
    if millis:
        try:
            value = float(millis) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    text = head.header("retry-after").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        value = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, value)
    return value if math.isfinite(value) and value >= 0 else None


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

