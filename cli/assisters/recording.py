"""Recordings: an exchange saved as JSON Lines (``--save``) and played back (``replay``).

One JSON object per line, written and flushed as the exchange happens, so a
crash or Ctrl-C keeps everything that arrived::

    {"type": "request", "format": "assisters-recording", "version": 1, "command": "chat",
     "method": "POST", "url": "...", "headers": [["Authorization", "[REDACTED]"], ...],
     "body": "<text>"}                         # or "body_b64" when not UTF-8
    {"type": "response", "ms": 41.2, "status": 200, "reason": "OK",
     "http_version": "HTTP/1.1", "headers": [["content-type", "text/event-stream"], ...]}
    {"type": "read", "ms": 43.0, "text": "data: {...}\\n\\n"}   # or "b64" when not UTF-8 alone
    {"type": "error", "ms": 950.1, "message": "the connection ... broke: ...", "status": 75}
    {"type": "end", "ms": 951.0}

``ms`` counts from the moment the request was sent. Reads are the body bytes as
they came off the connection (transfer framing removed, content encoding kept).
Credentials never reach the file: headers that carry them are replaced by
``[REDACTED]``, the URL loses its user info, and every line goes through
:func:`assisters.redact.scrub_bytes` (a read is scrubbed before it is encoded).
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from assisters import redact
from assisters.answer import Answer, parse_json
from assisters.errors import AssistersError, ExitStatus, RequestError
from assisters.exchange import BodyDecoder, OutgoingRequest, ResponseHead
from assisters.http_syntax import is_token
from assisters.redact import StreamScrubber, redact_headers, safe_url, scrub_bytes
from assisters.sse import SSEDecoder

FORMAT = "assisters-recording"
VERSION = 1
def _bytes_field(data: bytes, text_key: str, b64_key: str) -> dict[str, str]:
    try:
        return {text_key: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {b64_key: base64.b64encode(data).decode("ascii")}


class FileRecorder:
    """Writes an exchange to ``stream`` line by line, flushing each line."""

    def __init__(self, stream: IO[bytes], command: str) -> None:
        self._stream = stream
        self._command = command
        self._reads = StreamScrubber()  # a secret split across two reads is caught too
        self._start = time.perf_counter()

    def _ms(self) -> float:
        return round((time.perf_counter() - self._start) * 1000, 3)

    def _write(self, record: dict[str, Any]) -> None:
        self._stream.write(scrub_bytes(orjson.dumps(record)) + b"\n")
        self._stream.flush()

    def request(self, request: OutgoingRequest) -> None:
        self._start = time.perf_counter()
        record: dict[str, Any] = {
            "type": "request", "format": FORMAT, "version": VERSION, "command": self._command,
            "method": request.method, "url": safe_url(request.url),
            "headers": redact_headers(request.headers),
        }
        if request.body is not None:
            record.update(_bytes_field(scrub_bytes(request.body), "body", "body_b64"))
        self._write(record)

    def response(self, head: ResponseHead) -> None:
        self._write({"type": "response", "ms": self._ms(), "status": head.status,
                     "reason": head.reason, "http_version": head.http_version,
                     "headers": redact_headers(head.headers)})

    def read(self, data: bytes) -> None:
        data = self._reads.feed(data)
        if data:
            self._write({"type": "read", "ms": self._ms(), **_bytes_field(data, "text", "b64")})

    def error(self, error: AssistersError) -> None:
        self._write({"type": "error", "ms": self._ms(), "message": error.message,
                     "status": int(error.status)})

    def interrupted(self) -> None:
        self._write({"type": "interrupted", "ms": self._ms()})

    def end(self) -> None:
        held = self._reads.finish()
        if held:
            self._write({"type": "read", "ms": self._ms(), **_bytes_field(held, "text", "b64")})
        self._write({"type": "end", "ms": self._ms()})


@contextmanager
def recorder_for(path: str | None, command: str) -> Iterator[FileRecorder | None]:
    """``--save FILE`` (``-`` is not allowed: stdout is for the answer)."""
    if not path:
        yield None
        return
    try:
        stream = open(path, "wb")  # noqa: SIM115 - closed below, after the exchange
    except OSError as exc:
        raise RequestError(f"cannot write recording {path}: {exc.strerror}") from None
    with stream:
        yield FileRecorder(stream, command)
    if redact.active() and joined_answer_holds_secret(Path(path)):
        withhold_body(Path(path))


def joined_answer_holds_secret(path: Path) -> bool:
    """Whether the answer a replay would assemble from this recording holds a secret.

    Every read is scrubbed on its own, but a server that sends a credential back
    inside the answer splits it across events (or hides it behind JSON escapes),
    where no byte search finds it; assembled, as ``replay`` would, it shows."""
    try:
        recording = load_recording(path)
        if recording.head is None:
            return False
        decoder = BodyDecoder(recording.head.header("content-encoding"))
        answer = Answer()
        if recording.head.is_json:
            answer.apply_completion(parse_json(b"".join(decoder.decode(d) for _, d in recording.reads)))
        else:
            events = SSEDecoder()
            for _, data in recording.reads:
                answer.apply_items(events.feed_data(decoder.decode(data)))
    except AssistersError:
        return False  # nothing a replay could assemble either
    text = orjson.dumps(answer.completion_object())
    return scrub_bytes(text) != text


def withhold_body(path: Path) -> None:
    """Rewrite a recording without its body reads, atomically.

    Done when the assembled answer holds a secret that no single read held (see
    :func:`joined_answer_holds_secret`): a replay would join the pieces again.
    The rest of the exchange (request, head, error, end) stays, with a
    ``withheld`` record in place of the reads."""
    temp = path.with_name(path.name + ".tmp")
    withheld = 0
    with path.open("rb") as source, temp.open("wb") as out:
        for line in source:
            if line.startswith(b'{"type":"read"'):
                withheld += 1
                continue
            if line.startswith(b'{"type":"end"') and withheld:
                out.write(orjson.dumps({"type": "withheld", "reads": withheld, "reason":
                                        "the answer held a credential the server sent back"}) + b"\n")
                withheld = 0
            out.write(line)
    os.replace(temp, path)


@dataclass
class Recording:
    request: dict[str, Any]
    head: ResponseHead | None
    reads: list[tuple[float, bytes]] = field(default_factory=list)
    error: AssistersError | None = None
    error_ms: float = 0.0
    interrupted: bool = False  # the user pressed Ctrl-C while recording


def looks_like_recording(data: bytes) -> bool:
    """Whether a file's first line says it is a recording (else: raw SSE bytes)."""
    first = data.split(b"\n", 1)[0]
    return first.startswith(b"{") and FORMAT.encode() in first


def load_recording(path: Path) -> Recording:
    """Parse and check a recording; a file that is not one, or a hand-edited line
    with a wrong type or range (:data:`FIELDS`), is a usage problem (exit 65)
    naming the line and the field, so that replaying never fails half-way."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise RequestError(f"cannot read recording {path}: {exc.strerror}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            if number == len(lines) and records:
                break  # a line cut short by a crash: keep what came before
            raise RequestError(f"{path}:{number}: not an assisters recording line") from None
        if not isinstance(record, dict):
            raise RequestError(f"{path}:{number}: not an assisters recording line")
        records.append((number, record))
    if not records or records[0][1].get("format") != FORMAT:
        raise RequestError(f"{path}: not an assisters recording (made with --save)")
    for number, record in records:
        problem = record_problem(record)
        if problem:
            raise RequestError(f"{path}:{number}: damaged recording: {problem}")
    return _assemble([record for _, record in records])


# The longest recorded time replay accepts (a week): --realtime sleeps that long.
MAX_RECORDED_MS = 7 * 86400 * 1000.0


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _is_ms(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and 0 <= value <= MAX_RECORDED_MS)


def _is_http_status(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599


def _is_exit_status(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)
            and value in ExitStatus._value2member_map_)


def _is_b64(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _is_headers(value: Any) -> bool:
    """A list of [name, value] pairs that can be sent again (``serve --replay``):
    token names, values without line breaks or NUL."""
    return isinstance(value, list) and all(
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and isinstance(pair[1], str)
        and is_token(pair[0]) and not any(c in pair[1] for c in "\r\n\0")
        for pair in value)


_FieldCheck = tuple[Callable[[Any], bool], str]
_MS: _FieldCheck = (_is_ms, f"a number of milliseconds from 0 to {MAX_RECORDED_MS:g}")
_TEXT: _FieldCheck = (_is_text, "a string")
_HEADERS: _FieldCheck = (_is_headers, "a list of [name, value] pairs of strings (names are HTTP tokens, "
                                      "values hold no line break)")
_B64: _FieldCheck = (_is_b64, "a base64 string")

# Each record type's fields and what they must hold; a field may be missing (it has
# a default), but one that is there must be right. Unknown types are skipped.
FIELDS: dict[str, dict[str, _FieldCheck]] = {
    "request": {"format": _TEXT, "command": _TEXT, "method": _TEXT, "url": _TEXT, "headers": _HEADERS,
                "body": _TEXT, "body_b64": _B64},
    "response": {"ms": _MS, "status": (_is_http_status, "an HTTP status from 100 to 599"),
                 "reason": _TEXT, "http_version": _TEXT, "headers": _HEADERS},
    "read": {"ms": _MS, "text": _TEXT, "b64": _B64},
    "error": {"ms": _MS, "message": _TEXT,
              "status": (_is_exit_status, "one of the documented exit statuses")},
    "interrupted": {"ms": _MS},
    "end": {"ms": _MS},
}
REQUIRED = {"response": ("status",)}


def record_problem(record: dict[str, Any]) -> str | None:
    """What is wrong with one recording line, in a few words, or None."""
    kind = record.get("type")
    if not isinstance(kind, str):
        return f'"type" must be a string, not {_shown(kind)}'
    fields = FIELDS.get(kind)
    if fields is None:
        return None  # a newer kind of line: replay ignores it
    for name in REQUIRED.get(kind, ()):
        if name not in record:
            return f'a "{kind}" line needs "{name}"'
    for name, (valid, expected) in fields.items():
        if name in record and not valid(record[name]):
            return f'"{name}" of a "{kind}" line must be {expected}, not {_shown(record[name])}'
    return None


def _shown(value: Any) -> str:
    text = orjson.dumps(value).decode() if value is not None else "null"
    return text if len(text) <= 60 else text[:57] + "..."


def _assemble(records: list[dict[str, Any]]) -> Recording:
    """The recording from checked lines (:func:`record_problem` passed each one)."""
    recording = Recording(request=records[0], head=None)
    for record in records[1:]:
        kind = record.get("type")
        if kind == "response":
            recording.head = ResponseHead(
                status=record["status"], reason=record.get("reason", ""),
                headers=[(k, v) for k, v in record.get("headers", [])],
                http_version=record.get("http_version", "HTTP/1.1"),
            )
        elif kind == "read":
            data = (base64.b64decode(record["b64"]) if "b64" in record
                    else record.get("text", "").encode("utf-8"))
            recording.reads.append((float(record.get("ms", 0)), data))
        elif kind == "interrupted":
            recording.interrupted = True
        elif kind == "error":
            status = ExitStatus(record.get("status", ExitStatus.TEMPORARY))
            recording.error = AssistersError(record.get("message", ""), status)
            recording.error_ms = float(record.get("ms", 0))
    return recording


class ReplayExchange:
    """A recorded exchange, played back as fast as possible or in recorded time."""

    def __init__(self, recording: Recording, *, realtime: bool = False) -> None:
        if recording.head is None:
            raise recording.error or RequestError("the recording holds no response")
        self.head = recording.head
        self._recording = recording
        self._realtime = realtime
        self._start = time.perf_counter()
        self.recorded_ms: float | None = None  # the time of the read being handed out

    def _wait_until(self, ms: float) -> None:
        if self._realtime:
            delay = ms / 1000 - (time.perf_counter() - self._start)
            if delay > 0:
                time.sleep(delay)

    def reads(self) -> Iterator[bytes]:
        for ms, data in self._recording.reads:
            self._wait_until(ms)
            self.recorded_ms = ms
            yield data
        if self._recording.error is not None:
            self._wait_until(self._recording.error_ms)
            raise self._recording.error
        if self._recording.interrupted:
            raise KeyboardInterrupt  # as the recorded command ended: exit 130
