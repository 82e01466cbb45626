"""``assisters raw``: a request body in, the response bytes out, untouched.

The body is sent as given; the response body goes to stdout exactly as received
(transfer framing removed, nothing else), written and flushed per network read.
``--events`` prints each SSE data payload on its own line instead (JSON made
compact, ``[DONE]`` dropped), for ``jq``.
"""

from __future__ import annotations

from typing import BinaryIO

import orjson

from assisters.client import status_error
from assisters.errors import AssistersError, RequestError
from assisters.exchange import BodyDecoder, Exchange, OutgoingRequest
from assisters.sse import Event, SSEDecoder
from assisters.stream import guarded_reads

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


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise RequestError(f"a header must look like 'Name: value', not {text!r}")
    return name.strip(), value.strip()


def raw_request(method: str, url: str, headers: list[tuple[str, str]], body: bytes | None,
                ) -> OutgoingRequest:
    given = {name.lower() for name, _ in headers}
    defaults = [pair for key, pair in RAW_DEFAULT_HEADERS.items() if key not in given]
    if body is None:
        defaults = [pair for pair in defaults if pair[0] != "Content-Type"]
    return OutgoingRequest(method.upper(), url, defaults + headers, body)


def consume_raw(exchange: Exchange, out: BinaryIO, *, events: bool) -> None:
    """Copy the body to ``out``; a non-2xx still goes to stdout, then raises."""
    broken: list[AssistersError] = []
    head = exchange.head
    if events and head.is_success:
        _copy_events(exchange, out, broken)
    else:
        body = bytearray()
        for data in guarded_reads(exchange, broken):
            out.write(data)
            out.flush()
            if not head.is_success and len(body) < 65536:
                body += data
        if not head.is_success:
            try:
                decoded = BodyDecoder(head.header("content-encoding")).decode(bytes(body))
            except AssistersError:
                decoded = b""
            raise status_error(head, decoded)
    if broken:
        raise broken[0]


def _copy_events(exchange: Exchange, out: BinaryIO, broken: list[AssistersError]) -> None:
    body_decoder = BodyDecoder(exchange.head.header("content-encoding"))
    if exchange.head.is_json:
        body = b"".join(body_decoder.decode(d) for d in guarded_reads(exchange, broken))
        out.write(_compact(body.decode("utf-8", "replace")) + b"\n")
        out.flush()
        return
    decoder = SSEDecoder()
    for data in guarded_reads(exchange, broken):
        lines = [
            _compact(item.data) + b"\n"
            for item in decoder.feed(body_decoder.decode(data))
            if type(item) is Event and item.data and not item.data.startswith("[DONE]")
        ]
        if lines:
            out.write(b"".join(lines))
            out.flush()


def _compact(data: str) -> bytes:
    """JSON on one line; anything else as it came."""
    try:
        return orjson.dumps(orjson.loads(data))
    except orjson.JSONDecodeError:
        return data.encode("utf-8", "replace")
