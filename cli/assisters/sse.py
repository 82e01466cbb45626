"""Incremental Server-Sent Events decoder: bytes in, events out.

Follows the WHATWG HTML event-stream rules (section 9.2.5-9.2.6):

* lines end at CRLF, LF or CR and nothing else (never U+2028, U+0085, VT, FF:
  ``str.splitlines`` and httpx's ``iter_lines`` would split there and corrupt
  JSON strings that contain those characters);
* bytes are buffered and each *complete* line is decoded as UTF-8 with
  replacement, so a read may end anywhere, even inside a character;
* a CR that ends a read ends its line at once (no waiting for the next read);
  an LF at the start of the next read is then the second half of that CRLF;
* one byte order mark is stripped at the very start of the stream;
* ``:`` starts a comment; the field name is everything before the first colon,
  one space after it is removed; a line without a colon is a field with an
  empty value; ``data`` lines are joined with LF; ``id`` containing NUL is
  ignored; ``retry`` counts only when it is all ASCII digits;
* a blank line dispatches the event, if any ``data`` line was seen;
* at the end of the stream an event without its blank line is discarded.

One deliberate addition: fields with any other name are reported as
:class:`Field` items instead of being silently dropped, because llama.cpp
servers sent mid-stream errors as an ``error:`` field; the interpreter decides
what they mean.

This module imports nothing from the HTTP stack so it can be fed from a socket,
a recording or a test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")
_CR = 0x0D


@dataclass(slots=True)
class Event:
    """A dispatched event: ``type`` is ``message`` unless an ``event:`` field set it."""

    type: str
    data: str
    id: str | None = None


@dataclass(slots=True)
class Comment:
    """A line starting with a colon (keep-alives, ``: ping``); text after the colon."""

    text: str


@dataclass(slots=True)
class Field:
    """A line whose field name is not one the standard defines."""

    name: str
    value: str


Item = Event | Comment | Field


class SSEDecoder:
    """Turns a byte stream, split into reads anywhere, into SSE items.

    ``feed`` returns the items completed by a read; ``close`` ends the stream.
    Comments are only reported when ``comments`` is true.
    """

    __slots__ = (
        "_at_start",
        "_buf",
        "_comments",
        "_data",
        "_last_id",
        "_scanned",
        "_skip_lf",
        "_type",
        "retry",
    )

    def __init__(self, *, comments: bool = False) -> None:
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no line end
        self._skip_lf = False  # the previous read ended with CR
        self._at_start = True
        self._data: list[str] = []
        self._type = ""
        self._last_id: str | None = None
        self._comments = comments
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[Item]:
        out: list[Item] = []
        if not chunk:
            return out
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
                if not chunk:
                    return out
        buf = self._buf
        buf += chunk
        search = _LINE_END.search
        start = 0
        pos = self._scanned
        while (m := search(buf, pos)) is not None:
            end = m.start()
            self._line(buf[start:end].decode("utf-8", "replace"), out)
            start = pos = m.end()
        if start:
            # Only a CR that ends the read may be the first half of a CRLF.
            self._skip_lf = start == len(buf) and buf[start - 1] == _CR
            del buf[:start]
        self._scanned = len(buf)
        return out

    def close(self) -> list[Item]:
        """End of stream: an unterminated line or event is discarded, per the standard."""
        self._buf.clear()
        self._scanned = 0
        self._data.clear()
        self._type = ""
        return []

    @property
    def pending(self) -> bool:
        """True when bytes or an undispatched event would be lost at end of stream."""
        return bool(self._buf) or bool(self._data)

    @property
    def pending_text(self) -> str:
        """What end of stream would discard, for diagnostics: the data lines of an
        event without its blank line, then an unterminated last line."""
        parts = [f"data: {line}" for line in self._data]
        if self._buf:
            parts.append(self._buf.decode("utf-8", "replace"))
        return "\n".join(parts)

    def _line(self, line: str, out: list[Item]) -> None:
        if self._at_start:
            self._at_start = False
            if line.startswith("\ufeff"):
                line = line[1:]
        if not line:
            self._dispatch(out)
            return
        if line[0] == ":":
            if self._comments:
                out.append(Comment(line[1:]))
            return
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)
        else:
            out.append(Field(name, value))

    def _dispatch(self, out: list[Item]) -> None:
        if self._data:
            out.append(Event(self._type or "message", "\n".join(self._data), self._last_id))
            self._data.clear()
        self._type = ""
