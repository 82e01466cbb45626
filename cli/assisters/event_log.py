"""``assisters debug``: every SSE event as it arrives, then a summary of the stream.

Unlike ``chat`` it never stops at the first bad event: it shows it, counts it and
reads on to the end of the body (events after ``[DONE]`` included), so a broken
stream can be seen whole. The exit status still follows the chat completion rules.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from assisters.answer import Answer, parse_json
from assisters.errors import AssistersError, IncompleteStream, LimitError, ProtocolError
from assisters.exchange import BodyDecoder, Exchange, OutgoingRequest, ResponseHead
from assisters.redact import redact_headers, safe_url
from assisters.sse import Comment, Event, Field, SSEDecoder
from assisters.stream import check_some_events, check_status, guarded_reads, read_whole_body
from assisters.terminal import Streams, direct_write, write_rest
from assisters.timing import Timing
from assisters.visible import one_line


@dataclass
class DebugStats:
    events: int = 0
    content_chunks: int = 0
    comments: int = 0
    after_done: int = 0
    done: bool = False  # [DONE] seen, even after an error that stopped the answer
    unparsable: int = 0
    unknown_fields: int = 0
    body_bytes: int = 0
    notes: list[str] = field(default_factory=list)


class EventPrinter:
    """One line of JSON per item (for ``jq``), or ``--pretty`` blocks for people."""

    def __init__(self, streams: Streams, *, pretty: bool, comments: bool) -> None:
        self._out = streams.stdout
        self._direct = direct_write(streams.stdout)
        if self._direct is not None:
            self._out.flush()  # what went through the buffer before comes first
        self._lines: list[bytes] = []  # written by flush, once per network read
        self._pretty = pretty
        self._comments = comments
        self._styled = streams.stdout_styled

    def event(self, index: int, ms: float, event: Event, payload: Any, parsed: bool) -> None:
        record: dict[str, Any] = {"index": index, "ms": round(ms, 3), "event": event.type}
        if event.id is not None:
            record["id"] = event.id
        record["data"] = payload if parsed else event.data
        if not parsed:
            record["json"] = False
        done = event.data.startswith("[DONE]")
        if done:
            record["done"] = True
        if self._pretty:
            label = f"Chunk {index} (+{ms:.1f} ms)"
            if event.type != "message":
                label += f" event: {event.type}"
            if not parsed and not done:
                label += " [not JSON]"
            body = orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() if parsed else event.data
            self._block(label, body)
        else:
            self._lines.append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

    def comment(self, ms: float, comment: Comment) -> None:
        if not self._comments:
            return
        if self._pretty:
            self._block(f"Comment (+{ms:.1f} ms)", comment.text)
        else:
            self._line({"ms": round(ms, 3), "comment": comment.text})

    def field(self, ms: float, item: Field) -> None:
        if self._pretty:
            self._block(f"Unknown field {item.name!r} (+{ms:.1f} ms)", item.value)
        else:
            self._line({"ms": round(ms, 3), "field": item.name, "value": item.value})

    def _line(self, record: dict[str, Any]) -> None:
        self._lines.append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

    def _block(self, label: str, body: str) -> None:
        if self._styled:
            label = f"\033[1;36m{label}:\033[0m"
        else:
            label += ":"
        indented = "\n".join("  " + line for line in body.split("\n"))
        self._lines.append(f"{label}\n{indented}\n".encode("utf-8", "replace"))

    def flush(self) -> None:
        """What the read brought, in one write."""
        lines = self._lines
        if not lines:
            return
        data = b"".join(lines)
        lines.clear()
        direct = self._direct
        if direct is None:
            self._out.write(data)
            self._out.flush()
            return
        written = direct(data)
        if written != len(data):
            write_rest(self._out, data, written)


def consume_debug(exchange: Exchange, printer: EventPrinter, timing: Timing,
                  streams: Streams) -> None:
    """Show every item, then the summary; raise as ``chat`` would for the same stream."""
    body_decoder = check_status(exchange)
    answer = Answer(keep_text=False)  # the text is shown per event, not kept
    stats = DebugStats()
    broken: list[AssistersError] = []
    first = b""
    last_read_ms: float | None = None  # a replay's recorded time of its last read
    over_limit: LimitError | None = None  # a size limit ends the body, not the summary
    if exchange.head.is_json:
        try:
            last_read_ms = _json_reply(exchange, guarded_reads(exchange, broken), body_decoder, answer,
                                       printer, stats, timing)
        except LimitError as exc:
            over_limit = exc
    else:
        decoder = SSEDecoder(comments=True)
        feed = decoder.feed
        decode = body_decoder.decode
        clock = time.perf_counter
        reads = guarded_reads(exchange, broken)
        first = next(reads, b"")  # kept, to say what arrived if it was not an event stream
        try:
            for data in itertools.chain((first,), reads) if first else reads:
                ms = exchange.recorded_ms
                if ms is None:
                    ms = (clock() - timing.start) * 1000
                else:  # a replay: the summary keeps the recorded clock, as the events do
                    last_read_ms = ms
                if timing.first_byte is None:  # a live exchange has set it as the read came
                    timing.first_byte = timing.start + ms / 1000
                decoded = decode(data)
                stats.body_bytes += len(decoded)
                for item in feed(decoded):
                    if type(item) is Event:
                        _event(item, ms, answer, printer, stats, timing)
                    else:
                        _item(item, ms, answer, printer, stats)
                printer.flush()
        except LimitError as exc:
            over_limit = exc
        finally:
            printer.flush()  # an interrupted read's events too
        if decoder.pending:
            pending = one_line(decoder.pending_text, 500)
            stats.notes.append(f"unterminated last event discarded: {pending}")
    timing.end = time.perf_counter() if last_read_ms is None else timing.start + last_read_ms / 1000
    error: AssistersError | None = None
    warnings: list[str] = []
    try:
        if over_limit is not None:
            raise over_limit
        warnings = answer.outcome(broken[0] if broken else None)
    except (IncompleteStream, ProtocolError) as exc:
        error = exc
        if not exchange.head.is_json and not isinstance(exc, LimitError):
            try:
                check_some_events(answer, exchange.head, first, broken)
            except ProtocolError as what_it_was:
                error = what_it_was
    except AssistersError as exc:
        error = exc
    if over_limit is not None:
        stats.notes.append(over_limit.message)
    streams.warn(summary(answer, stats, timing, broken))
    for warning in warnings:
        streams.warn(warning)
    if error is not None:
        raise error


def _json_reply(exchange: Exchange, reads: Iterator[bytes], body_decoder: BodyDecoder, answer: Answer,
                printer: EventPrinter, stats: DebugStats, timing: Timing) -> float | None:
    """A 2xx application/json reply: shown as one event, read as one completion.
    Returns a replay's recorded time of the body (None when live)."""
    body = read_whole_body(reads, body_decoder)
    recorded = exchange.recorded_ms
    ms = (time.perf_counter() - timing.start) * 1000 if recorded is None else recorded
    if timing.first_byte is None:
        timing.first_byte = timing.start + ms / 1000
    stats.body_bytes = len(body)
    stats.events = 1
    payload = parse_json(body)
    text = body.decode("utf-8", "replace")
    printer.event(1, ms, Event("message", text), payload, payload is not None)
    printer.flush()
    if payload is None:
        stats.unparsable = 1
        answer.note_bad_payload(text)
        return recorded
    answer.apply_completion(payload)
    timing.first_token = timing.start + ms / 1000
    return recorded


def _item(item: Comment | Field, ms: float, answer: Answer, printer: EventPrinter,
          stats: DebugStats) -> None:
    if type(item) is Comment:
        stats.comments += 1
        printer.comment(ms, item)
        return
    stats.unknown_fields += 1
    printer.field(ms, item)
    answer.apply(item)


def _event(event: Event, ms: float, answer: Answer, printer: EventPrinter,
           stats: DebugStats, timing: Timing) -> None:
    stats.events += 1
    if stats.done:
        stats.after_done += 1
    data = event.data
    done = data.startswith("[DONE]")
    if done:
        stats.done = True
    payload = parse_json(data)
    parsed = payload is not None or data.strip() == "null"
    if not parsed and data and not done:
        stats.unparsable += 1
    answer.apply_parsed(event, payload)  # parsed once, for the printer and the answer
    if answer.new_text:
        stats.content_chunks += 1
        if timing.first_token is None:
            timing.first_token = timing.start + ms / 1000  # when its read arrived (or was recorded)
        answer.new_text.clear()
    if answer.new_reasoning:
        answer.new_reasoning.clear()
    printer.event(stats.events, ms, event, payload, parsed)


def summary(answer: Answer, stats: DebugStats, timing: Timing,
            broken: list[AssistersError]) -> str:
    def ms(when: float | None) -> str:
        value = timing.since_start(when)
        return "-" if value is None else f"{value * 1000:.1f} ms"

    usage = answer.usage if isinstance(answer.usage, dict) else {}
    completion_tokens = usage.get("completion_tokens")
    tokens_per_second = timing.tokens_per_second(completion_tokens)
    speed = "-" if tokens_per_second is None else f"{tokens_per_second:.1f} tokens/s"
    usage_text = (f"{usage.get('prompt_tokens')} prompt + {completion_tokens} completion = "
                  f"{usage.get('total_tokens')} total" if usage else "none sent")
    usage_text = one_line(usage_text, 200)
    lines = [
        f"summary: {stats.events} events, {stats.content_chunks} content chunks, "
        f"{stats.comments} comments, {stats.body_bytes} body bytes",
        f"  time to first byte {ms(timing.first_byte)}, first token {ms(timing.first_token)}, "
        f"total {ms(timing.end)}, {speed}",
        f"  finish_reason {one_line(str(answer.finish_reason or '-'), 80)}, "
        f"[DONE] {'yes' if stats.done else 'no'}, "
        f"usage {usage_text}",
        "  anomalies: " + (", ".join(anomalies(answer, stats, broken)) or "none"),
    ]
    return "\n".join(lines)


def anomalies(answer: Answer, stats: DebugStats,
              broken: list[AssistersError]) -> list[str]:
    found = []
    if stats.body_bytes == 0:
        found.append("empty 200 body")
    if stats.after_done:
        found.append(f"{stats.after_done} events after [DONE]")
    if not stats.done and not answer.done and stats.body_bytes:
        found.append("missing [DONE]")
    if stats.unparsable:
        found.append(f"{stats.unparsable} unparsable data")
    if stats.unknown_fields:
        found.append(f"{stats.unknown_fields} unknown SSE fields")
    if answer.error is not None:
        found.append(f"error in stream: {answer.error.message}")
    if broken:
        found.append(f"transport: {broken[0].message}")
    found.extend(stats.notes)
    return found


def describe_request(request: OutgoingRequest) -> str:
    """``-v``: the request as sent, credentials redacted."""
    lines = [f"> {request.method} {safe_url(request.url)}"]
    lines += [f"> {k}: {v}" for k, v in redact_headers(request.headers)]
    if request.body is not None:
        lines.append(">")
        lines.append("> " + request.body.decode("utf-8", "replace"))
    return "\n".join(lines)


def describe_response(head: ResponseHead) -> str:
    lines = [f"< {head.http_version} {head.status} {head.reason}"]
    lines += [f"< {k}: {v}" for k, v in redact_headers(head.headers)]
    return "\n".join(lines)
