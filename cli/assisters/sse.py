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

Memory is bounded whatever the server sends: a line longer than
:data:`MAX_LINE_BYTES` or an event whose data grows past :data:`MAX_EVENT_BYTES`
(16 MiB each, far above any real event, even one carrying a base64 image) ends
the stream with :class:`~assisters.errors.LimitError` (exit 76), naming the
limit. The check costs the per-event path nothing: it is made where a line is
buffered across reads, and on a read longer than the limit.

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

from assisters.errors import LimitError

_LINE_END = re.compile(rb"\r\n|\r|\n")
_CR = 0x0D
MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_EVENT_BYTES = 16 * 1024 * 1024  # the data lines of one event together


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
    Comments are only reported when ``comments`` is true. ``feed_data`` is the
    same with the usual event (one ``data`` line, no other field) returned as
    the undecoded bytes of its value, for consumers that parse it themselves
    and want no object per event.

    Reads without a CR (nearly every stream) take a fast path: the bytes up to
    the last blank line are split into events at once, and an event that is a
    single ``data`` line is taken without going through it line by line.
    Everything else, and every read with a CR in it, follows the rules one line
    at a time; both paths leave the same state behind, so reads may alternate.
    """

    __slots__ = (
        "_at_start",
        "_buf",
        "_comments",
        "_data",
        "_data_size",
        "_last_id",
        "_pending",
        "_scanned",
        "_skip_lf",
        "_type",
        "idle",
        "retry",
    )

    def __init__(self, *, comments: bool = False) -> None:
        self._buf = bytearray()  # an incomplete last line: never holds a line end
        self._scanned = 0  # bytes of _buf known to hold no line end
        self._skip_lf = False  # the previous read ended with CR
        self._at_start = True
        # True when a line since the last blank line may have left state for the
        # next dispatch (and before the first line, for the BOM): the fast path then
        # waits for a blank line, going line by line.
        self._pending = True
        # Read-only outside: nothing pending, nothing buffered, no CR just before. A read
        # that is then exactly b"data: " + value + b"\n\n", with no CR or LF in the value,
        # is one message event with that data and leaves the state as it was (the
        # fast path of feed and feed_data; a consumer may take such a read itself).
        self.idle = False
        self._data: list[str] = []
        self._data_size = 0  # characters in _data, against MAX_EVENT_BYTES
        self._type = ""
        self._last_id: str | None = None
        self._comments = comments
        self.retry: int | None = None

    @property
    def last_id(self) -> str | None:
        """The last event ID seen so far (``id`` field), or None."""
        return self._last_id

    def feed(self, chunk: bytes) -> list[Item]:
        if self.idle and chunk[:6] == b"data: " and chunk[-2:] == b"\n\n" and len(chunk) <= MAX_LINE_BYTES:
            # The usual read: exactly one event of one data line, nothing before it.
            value = chunk[6:-2]
            if 10 not in value and 13 not in value:
                return [Event("message", value.decode("utf-8", "replace"), self._last_id)]
        return self._feed(chunk, True)  # type: ignore[return-value]

    def feed_data(self, chunk: bytes) -> list[bytes | Item]:
        """Like :meth:`feed`, but an event that the fast path takes whole (one
        ``data`` line and nothing else: nearly every event of a typical stream,
        though not the first) comes as its value's bytes, not decoded (invalid
        UTF-8 is the caller's to replace), instead of an :class:`Event`. Its
        type is ``message``; its id is not reported (use :meth:`feed` when ids
        matter). Every other event still comes as an Event."""
        if self.idle and chunk[:6] == b"data: " and chunk[-2:] == b"\n\n" and len(chunk) <= MAX_LINE_BYTES:
            value = chunk[6:-2]
            if 10 not in value and 13 not in value:
                return [value]
        return self._feed(chunk, False)

    def _feed(self, chunk: bytes, decode: bool) -> list[bytes | Item]:
        out: list[bytes | Item] = []
        if len(chunk) > MAX_LINE_BYTES:
            self._check_long_read(chunk)
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
        if 13 in chunk:  # CR
            self._feed_lines(chunk, out)  # type: ignore[arg-type]
            self.idle = not (self._pending or self._buf or self._skip_lf)
            return out
        buf = self._buf
        if buf:
            buf += chunk
            if 10 not in chunk:  # still inside the same line: no rescan, no copy
                self._scanned = len(buf)
                self.idle = False
                if len(buf) > MAX_LINE_BYTES:
                    raise line_too_long()
                return out
            if len(buf) > MAX_LINE_BYTES and buf.find(b"\n") > MAX_LINE_BYTES:
                raise line_too_long()  # the line that this read completes
            data = bytes(buf)
            buf.clear()
            self._scanned = 0
        else:
            data = chunk
        pos = 0
        if self._pending:
            # An event in progress: its remaining lines one at a time, up to its blank line.
            while (end := data.find(b"\n", pos)) >= 0:
                self._line(data[pos:end].decode("utf-8", "replace"), out)  # type: ignore[arg-type]
                pos = end + 1
                if not self._pending:
                    break
        if not self._pending and (last := data.rfind(b"\n\n", pos)) >= 0:
            if data.find(b"\n", pos) != last:
                for block in data[pos:last].split(b"\n\n"):
                    self._block(block, decode, out)
            elif data.startswith(b"data:", pos):  # the usual event: one data line
                value = data[pos + 6 : last] if data[pos + 5] == 0x20 else data[pos + 5 : last]
                out.append(Event("message", value.decode("utf-8", "replace"), self._last_id)
                           if decode else value)
            else:
                self._block(data[pos:last], decode, out)
            pos = last + 2
        if pos < len(data):
            # After the last blank line: complete lines now (an unknown field is
            # reported at once), the incomplete one kept for the next read.
            while (end := data.find(b"\n", pos)) >= 0:
                self._line(data[pos:end].decode("utf-8", "replace"), out)  # type: ignore[arg-type]
                pos = end + 1
            if pos < len(data):
                buf += data[pos:]
                self._scanned = len(buf)
                if len(buf) > MAX_LINE_BYTES:
                    raise line_too_long()
        self.idle = not (self._pending or buf)
        return out

    def _check_long_read(self, chunk: bytes) -> None:
        """Refuse a line over the limit in the buffer followed by ``chunk``, as the same
        bytes in smaller reads would be: for a read longer than a line may be."""
        text = bytes(self._buf) + chunk
        start = 0
        for match in _LINE_END.finditer(text):
            if match.start() - start > MAX_LINE_BYTES:
                raise line_too_long()
            start = match.end()
        if len(text) - start > MAX_LINE_BYTES:
            raise line_too_long()

    def _block(self, block: bytes, decode: bool, out: list[bytes | Item]) -> None:
        """The lines between two blank lines, with nothing pending before them."""
        if block[:5] == b"data:" and b"\n" not in block:
            value = block[6:] if block[5:6] == b" " else block[5:]
            out.append(Event("message", value.decode("utf-8", "replace"), self._last_id) if decode else value)
            return
        for text in block.split(b"\n"):
            self._line(text.decode("utf-8", "replace"), out)  # type: ignore[arg-type]
        self._dispatch(out)  # type: ignore[arg-type]

    def _feed_lines(self, chunk: bytes, out: list[Item]) -> None:
        """The general path: any line ends, one line at a time."""
        buf = self._buf
        buf += chunk
        if len(buf) > MAX_LINE_BYTES:
            self._check_long_read(b"")  # every line in the buffer, before any is taken
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
        if len(buf) > MAX_LINE_BYTES:
            raise line_too_long()

    def close(self) -> list[Item]:
        """End of stream: an unterminated line or event is discarded, per the standard."""
        self._buf.clear()
        self._scanned = 0
        self._data.clear()
        self._data_size = 0
        self._type = ""
        self._pending = self._at_start
        self.idle = not (self._pending or self._skip_lf)
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
            self._data_size += len(value) + 1
            if self._data_size > MAX_EVENT_BYTES:
                raise LimitError(f"an event of the stream is larger than {mib(MAX_EVENT_BYTES)} "
                                 "(the limit for one event's data)")
            self._pending = True
        elif name == "event":
            self._type = value
            self._pending = True
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
            self._data_size = 0
        self._type = ""
        self._pending = False


def line_too_long() -> LimitError:
    return LimitError(f"a line of the event stream is longer than {mib(MAX_LINE_BYTES)} "
                      "(the limit for one line)")


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"
