"""A non-2xx reply as the user sees it: the server's own words, and its requested wait.

The error's exit status comes from :func:`assisters.errors.status_for_http`;
``Retry-After`` and ``retry-after-ms`` become ``retry_after`` for the retry policy.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import time
from typing import TYPE_CHECKING

from assisters.answer import error_message, parse_json
from assisters.body_text import excerpt as body_excerpt
from assisters.errors import QUOTA_CODE, HTTPStatusError
from assisters.redact import redact_url
from assisters.visible import one_line

if TYPE_CHECKING:
    from assisters.exchange import ResponseHead

ERROR_BODY_LIMIT = 64 * 1024  # how much of an error body is read to find its message


def status_error(head: ResponseHead, body: bytes) -> HTTPStatusError:
    """The error for a non-2xx response, worded from its body where it can be."""
    code = head.status
    payload = parse_json(body)
    message = error_message(payload)
    if message:
        text = f"HTTP {code}: {one_line(message, 400)}"
    else:
        excerpt = body_excerpt(head.media_type, body, 80)  # an HTML error page: its title
        text = f"HTTP {code} {head.reason}".rstrip() + (f": {excerpt}" if excerpt else "")
    location = head.header("location")
    if 300 <= code < 400 and location:
        text += f" (redirect to {redact_url(location)}; check the base URL)"
    retry_after = retry_after_seconds(head)
    if retry_after is not None:
        text += f" (retry after {retry_after:g} s)"
    error = HTTPStatusError(code, text, body=body, code=error_code(payload))
    error.retry_after = retry_after
    return error


def error_code(payload: object) -> str | None:
    """``error.code`` (or ``error.type``) of an OpenAI-style error body, when it is a string."""
    if not isinstance(payload, dict) or not isinstance(payload.get("error"), dict):
        return None
    for key in ("code", "type"):
        value = payload["error"].get(key)
        if value == QUOTA_CODE or (key == "code" and isinstance(value, str) and value):
            return str(value)
    return None


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
