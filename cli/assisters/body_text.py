"""A reply body in words, for a message: what arrived when it was not what was asked for.

A proxy's error page, a captive portal's login page or a gateway's plain-text
notice can come back with status 200 instead of an event stream. The user is told
what it was, with a short excerpt: an HTML page by its ``<title>`` (or its text
without tags), anything else by its first characters, always through
:func:`assisters.visible.one_line` (one line, control characters made visible).
"""

from __future__ import annotations

import re

from assisters.errors import ProtocolError
from assisters.visible import one_line

SAMPLE_BYTES = 4096  # how much of a body an excerpt looks at
_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.I | re.S)
_SCRIPT = re.compile(r"<(script|style)\b.*?</\1\s*>", re.I | re.S)
_TAG = re.compile(r"<[^>]*>?")
_HTML_START = ("<!doctype html", "<html")


def is_html(media_type: str, text: str) -> bool:
    if media_type in ("text/html", "application/xhtml+xml"):
        return True
    return not media_type and text.lstrip()[:14].lower().startswith(_HTML_START)


def excerpt(media_type: str, body: bytes, limit: int = 100) -> str:
    """A short single line that says what ``body`` holds (an HTML page: its title)."""
    text = body[:SAMPLE_BYTES].decode("utf-8", "replace")
    if is_html(media_type, text):
        import html

        title = _TITLE.search(text)
        page = title.group(1) if title and title.group(1).strip() else _SCRIPT.sub(" ", text)
        text = html.unescape(_TAG.sub(" ", page))
    return one_line(text, limit)


def no_events_error(media_type: str, body_start: bytes) -> ProtocolError:
    """A 2xx reply to a streamed request that held no event at all, in words: an
    HTML page, another content type, or an event stream with nothing in it."""
    if not body_start:
        return ProtocolError("the server's response held no events (empty body)")
    text = excerpt(media_type, body_start)
    if is_html(media_type, body_start[:SAMPLE_BYTES].decode("utf-8", "replace")):
        kind = f"an HTML page ({media_type or 'no content type'})"
    elif media_type == "text/event-stream":
        return ProtocolError(f"the server's event stream held no events: {text}")
    else:
        kind = media_type or "a body with no content type"
    return ProtocolError(f"the server sent {kind}, not an event stream: {text}")
