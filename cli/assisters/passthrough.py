"""``assisters raw``: a request body in, the response bytes out, untouched.

The body is sent as given; the response body goes to stdout exactly as received
(transfer framing removed, nothing else), written at once per network read.
``--events`` prints each SSE data payload on its own line instead (JSON made
compact, ``[DONE]`` dropped), for ``jq``.
"""

from __future__ import annotations

import itertools
from typing import BinaryIO

import orjson

from assisters.body_text import no_events_error
from assisters.errors import AssistersError, RequestError
from assisters.exchange import BodyDecoder, Exchange, OutgoingRequest
from assisters.http_errors import status_error
from assisters.redact import is_secret_header, register_credential
from assisters.sse import Event, SSEDecoder
from assisters.stream import body_start, error_body, guarded_reads, read_whole_body
from assisters.terminal import direct_write, write_rest

RAW_DEFAULT_HEADERS = {
    "content-type": ("Content-Type", "application/json"),
    # Ask for the body as it is, so the bytes on stdout are the answer itself.
    "accept-encoding": ("Accept-Encoding", "identity"),
}


def validate_json(body: bytes, source: str) -> None:
    """Exit 65 before anything is sent, with where the JSON goes wrong."""
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            " (--no-validate sends it anyway)"
        ) from None


def raw_request(method: str, url: str, headers: list[tuple[str, str]], body: bytes | None,
                ) -> OutgoingRequest:
    """The request ``raw`` sends; ``headers`` are checked already
    (:func:`assisters.http_syntax.parse_header`). A credential among them is
    registered as a secret, so that a server echoing it is scrubbed too."""
    for name, value in headers:
        if is_secret_header(name):
            register_credential(value)
    given = {name.lower() for name, _ in headers}
    defaults = [pair for key, pair in RAW_DEFAULT_HEADERS.items() if key not in given]
    if body is None:
        defaults = [pair for pair in defaults if pair[0] != "Content-Type"]
    return OutgoingRequest(method.upper(), url, defaults + headers, body)


def consume_raw(exchange: Exchange, out: BinaryIO, *, events: bool) -> None:
    """Copy the body to ``out``; a non-2xx still goes to stdout, then raises."""
    broken: list[AssistersError] = []
    head = exchange.head
    if not head.is_success:
        _copy_error(exchange, out, broken)
    elif events:
        _copy_events(exchange, out, broken)
    else:
        _copy_body(exchange, out, broken)
    if broken:
        raise broken[0]


def _copy_body(exchange: Exchange, out: BinaryIO, broken: list[AssistersError]) -> None:
    """Each read to ``out`` at once: straight to the file when ``out`` is stdout."""
    direct = direct_write(out)
    try:  # what guarded_reads does, without its generator on the per-read path
        if direct is None:
            write, flush = out.write, out.flush
            for data in exchange.reads():
                write(data)
                flush()
        else:
            out.flush()
            for data in exchange.reads():
                written = direct(data)
                if written != len(data):
                    write_rest(out, data, written)
    except AssistersError as exc:
        broken.append(exc)


def _copy_error(exchange: Exchange, out: BinaryIO, broken: list[AssistersError]) -> None:
    """A non-2xx body to ``out`` as it arrives, then its status as the error."""
    head = exchange.head
    body = bytearray()
    for data in guarded_reads(exchange, broken):
        out.write(data)
        out.flush()
        if len(body) < 65536:
            body += data
    raise status_error(head, error_body(head, bytes(body)))


def _copy_events(exchange: Exchange, out: BinaryIO, broken: list[AssistersError]) -> None:
    """``--events``: each data payload on a line. A body with no event at all (an HTML
    page, an empty body) prints nothing and says what it was: exit 76."""
    head = exchange.head
    body_decoder = BodyDecoder(head.header("content-encoding"))
    if head.is_json:
        body = read_whole_body(guarded_reads(exchange, broken), body_decoder)
        out.write(_compact(body.decode("utf-8", "replace")) + b"\n")
        out.flush()
        return
    feed = SSEDecoder().feed_data
    decode = body_decoder.decode
    compact = _compact_line
    reads = guarded_reads(exchange, broken)
    first = next(reads, b"")  # kept, to say what arrived if it was not an event stream
    events = 0
    for data in itertools.chain((first,), reads) if first else reads:
        lines = []
        for item in feed(decode(data)):
            if item.__class__ is bytes:
                events += 1
                if item and not item.startswith(b"[DONE]"):  # type: ignore[arg-type]
                    lines.append(compact(item))  # type: ignore[arg-type]
            elif type(item) is Event:
                events += 1
                if item.data and not item.data.startswith("[DONE]"):
                    lines.append(_compact(item.data) + b"\n")
        if lines:
            out.write(b"".join(lines))
            out.flush()
    if not events and not broken:
        raise no_events_error(head.media_type, body_start(head, first))


def _compact_line(data: bytes) -> bytes:
    """A data payload's bytes as one line: JSON made compact, anything else as it came."""
    try:
        return orjson.dumps(orjson.loads(data), option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONDecodeError:  # not JSON, or not UTF-8: as the decoded text would be
        return _compact(data.decode("utf-8", "replace")) + b"\n"


def _compact(data: str) -> bytes:
    """JSON on one line; anything else as it came."""
    try:
        return orjson.dumps(orjson.loads(data))
    except orjson.JSONDecodeError:
        return data.encode("utf-8", "replace")
