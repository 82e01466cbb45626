"""The streaming core: turn a chat completion exchange into text for a sink.

Shared by every command that shows a chat answer, live or from a recording. It
knows nothing of click or of stdout: output goes through a :class:`ChatSink`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from assisters.answer import Answer, parse_json
from assisters.body_text import excerpt, no_events_error
from assisters.config import Settings
from assisters.errors import AssistersError, IncompleteStream, LimitError, ProtocolError
from assisters.exchange import BodyDecoder, Exchange, OutgoingRequest, ResponseHead, read_body
from assisters.http_errors import ERROR_BODY_LIMIT, status_error
from assisters.sse import SSEDecoder
from assisters.timing import Timing

# Far above any real reply, so memory stays bounded whatever arrives (exit 76 beyond):
ERROR_BODY_DECODED_LIMIT = 1024 * 1024  # an error body once decompressed (its message is in the start)
JSON_REPLY_LIMIT = 32 * 1024 * 1024  # a non-streamed reply, the whole answer in one JSON object

CHAT_HEADERS = [
    ("Content-Type", "application/json"),
    ("Accept", "text/event-stream, application/json"),
    ("Accept-Encoding", "gzip, deflate"),
]


class ChatSink(Protocol):
    """Where the answer goes as it arrives; called once per network read."""

    def text(self, text: str) -> None: ...

    def reasoning(self, text: str) -> None: ...


@dataclass
class ChatResult:
    answer: Answer
    timing: Timing
    warnings: list[str]
    resumed_prefix: str = ""  # text shown by earlier attempts that this answer continues


def chat_request(settings: Settings, body: bytes) -> OutgoingRequest:
    return OutgoingRequest("POST", settings.url("chat/completions"), list(CHAT_HEADERS), body)


def check_status(exchange: Exchange) -> BodyDecoder:
    """Raise the server's error for a non-2xx reply; else the body's decoder."""
    decoder = BodyDecoder(exchange.head.header("content-encoding"))
    if not exchange.head.is_success:
        raise status_error(exchange.head, error_body(exchange.head, read_body(exchange, ERROR_BODY_LIMIT)))
    return decoder


def error_body(head: ResponseHead, raw: bytes) -> bytes:
    """The start of a non-2xx body, decompressed (at most 1 MiB: beyond that, exit 76);
    a body that cannot be decompressed is taken as empty, the status still says it all."""
    what = f"the HTTP {head.status} error body"
    try:
        decoder = BodyDecoder(head.header("content-encoding"), limit=ERROR_BODY_DECODED_LIMIT, what=what)
        return decoder.decode(raw)
    except LimitError:
        raise
    except ProtocolError:
        return b""


def read_whole_body(reads: Iterable[bytes], decoder: BodyDecoder, what: str = "a JSON reply",
                    limit: int = JSON_REPLY_LIMIT) -> bytes:
    """A non-streamed body, decompressed, up to ``limit`` bytes (exit 76 beyond):
    a JSON reply, a model list, a Batch API object."""
    parts: list[bytes] = []
    size = 0
    for data in reads:
        data = decoder.decode(data)
        size += len(data)
        if size > limit:
            raise LimitError(f"{what} is larger than {limit // (1024 * 1024)} MiB "
                             f"(the limit for {what})")
        parts.append(data)
    return b"".join(parts)


def guarded_reads(exchange: Exchange, broken: list[AssistersError]) -> Iterator[bytes]:
    """The exchange's reads; a transport failure ends them and lands in ``broken``,
    because what it means depends on what arrived before it."""
    try:
        yield from exchange.reads()
    except AssistersError as exc:
        broken.append(exc)


def consume_chat(exchange: Exchange, sink: ChatSink, timing: Timing,
                 answer: Answer | None = None) -> ChatResult:
    """Read a chat completion reply into ``sink``, a network read at a time.

    Returns when the answer is complete; raises an :class:`AssistersError` when
    it failed, after the text that arrived has gone to the sink (``answer``,
    when given, then holds what did arrive, such as usage).
    """
    body_decoder = check_status(exchange)
    answer = Answer() if answer is None else answer
    broken: list[AssistersError] = []
    reads = guarded_reads(exchange, broken)
    first = next(reads, b"")  # kept, to say what arrived if it was not an event stream
    if first:
        reads = itertools.chain((first,), reads)
    if exchange.head.is_json:
        _read_json_reply(reads, body_decoder, answer, sink, timing, broken, exchange.head)
    else:
        _read_event_stream(reads, body_decoder, answer, sink, timing)
    timing.end = time.perf_counter()
    try:
        warnings = answer.outcome(broken[0] if broken else None)
    except IncompleteStream as exc:
        if broken:  # a total timeout must not be retried or resumed
            exc.retryable = broken[0].retryable
        check_some_events(answer, exchange.head, first, broken)
        raise
    except ProtocolError:
        check_some_events(answer, exchange.head, first, broken)
        raise
    return ChatResult(answer, timing, warnings)


def check_some_events(answer: Answer, head: ResponseHead, first_read: bytes,
                      broken: list[AssistersError]) -> None:
    """A body that ended without a single event is not an event stream: raise what it
    was instead (an HTML page, a text/plain notice, an empty body), not retried."""
    if answer.events or answer.error is not None or broken:
        return
    raise no_events_error(head.media_type, body_start(head, first_read)) from None


def body_start(head: ResponseHead, first_read: bytes) -> bytes:
    """The first read, decompressed when it has to be, for an excerpt."""
    try:
        return BodyDecoder(head.header("content-encoding"), limit=ERROR_BODY_DECODED_LIMIT,
                           what="the start of the body").decode(first_read)
    except ProtocolError:
        return first_read


def _read_event_stream(
    reads: Iterator[bytes],
    body_decoder: BodyDecoder,
    answer: Answer,
    sink: ChatSink,
    timing: Timing,
) -> None:
    decoder = SSEDecoder()
    read = answer.read_events
    decode = body_decoder.decode if body_decoder.decodes else None
    for data in reads:
        text = read(decoder, data if decode is None else decode(data))
        if answer.new_reasoning:
            _deliver(answer, sink, timing)  # reasoning first; the text is already taken
        if text:
            if timing.first_token is None:
                timing.first_token = time.perf_counter()
            sink.text(text)
        if answer.done or answer.error is not None:
            return


def _read_json_reply(
    reads: Iterator[bytes],
    body_decoder: BodyDecoder,
    answer: Answer,
    sink: ChatSink,
    timing: Timing,
    broken: list[AssistersError],
    head: ResponseHead,
) -> None:
    body = read_whole_body(reads, body_decoder)
    payload = parse_json(body)
    if payload is None:
        if broken:
            raise broken[0]
        if not body:
            raise ProtocolError(f"the server replied {head.media_type} with an empty body")
        raise ProtocolError(f"the server replied {head.media_type}, but the body is not JSON: "
                            f"{excerpt(head.media_type, body)}")
    answer.apply_completion(payload)
    _deliver(answer, sink, timing)


def _deliver(answer: Answer, sink: ChatSink, timing: Timing) -> None:
    if answer.new_reasoning:
        if timing.first_token is None:
            timing.first_token = time.perf_counter()
        sink.reasoning(answer.take_reasoning())
    if answer.new_text:
        if timing.first_token is None:
            timing.first_token = time.perf_counter()
        sink.text(answer.take_text())
