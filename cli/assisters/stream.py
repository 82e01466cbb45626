"""The streaming core: turn a chat completion exchange into text for a sink.

Shared by every command that shows a chat answer, live or from a recording. It
knows nothing of click or of stdout: output goes through a :class:`ChatSink`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from assisters.answer import Answer, parse_json
from assisters.config import Settings
from assisters.errors import AssistersError, IncompleteStream, ProtocolError
from assisters.exchange import BodyDecoder, Exchange, OutgoingRequest, read_body
from assisters.http_errors import ERROR_BODY_LIMIT, status_error
from assisters.sse import SSEDecoder
from assisters.timing import Timing

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
        try:
            body = decoder.decode(read_body(exchange, ERROR_BODY_LIMIT))
        except ProtocolError:
            body = b""
        raise status_error(exchange.head, body)
    return decoder


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
    if exchange.head.is_json:
        _read_json_reply(reads, body_decoder, answer, sink, timing, broken)
    else:
        _read_event_stream(reads, body_decoder, answer, sink, timing)
    timing.end = time.perf_counter()
    try:
        warnings = answer.outcome(broken[0] if broken else None)
    except IncompleteStream as exc:
        if broken:  # a total timeout must not be retried or resumed
            exc.retryable = broken[0].retryable
        raise
    return ChatResult(answer, timing, warnings)


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
) -> None:
    body = b"".join(body_decoder.decode(data) for data in reads)
    payload = parse_json(body)
    if payload is None:
        if broken:
            raise broken[0]
        raise ProtocolError("the server replied application/json, but the body is not JSON")
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
