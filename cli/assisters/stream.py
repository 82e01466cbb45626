"""The streaming core: send a chat request, decode the reply, hand text to a sink.

Shared by every command that talks to ``/chat/completions``. It knows nothing of
click or of stdout: output goes through a :class:`ChatSink`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import httpx

from assisters.client import Timing, endpoint, is_json_reply, open_response, transport_error
from assisters.completion import CompletionAccumulator, parse_json
from assisters.config import Settings
from assisters.errors import AssistersError, ProtocolError
from assisters.sse import SSEDecoder


class ChatSink(Protocol):
    """Where the answer goes as it arrives; called once per network read."""

    def text(self, text: str) -> None: ...

    def reasoning(self, text: str) -> None: ...


@dataclass
class ChatResult:
    answer: CompletionAccumulator
    timing: Timing
    warnings: list[str]


def run_chat(
    client: httpx.Client,
    settings: Settings,
    body: bytes,
    sink: ChatSink,
    *,
    timing: Timing | None = None,
) -> ChatResult:
    """POST ``body`` to ``/chat/completions`` and stream the answer into ``sink``.

    Returns when the answer is complete; raises an :class:`AssistersError` when
    it failed, after the text that arrived has gone to the sink.
    """
    timing = timing or Timing()
    answer = CompletionAccumulator()
    url = endpoint(settings, "chat/completions")
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}
    broken: AssistersError | None = None
    with open_response(client, "POST", url, content=body, headers=headers, timing=timing) as response:
        if is_json_reply(response):
            _read_json_reply(response, answer, sink, timing)
        else:
            broken = _read_event_stream(response, answer, sink, timing, url)
    timing.end = time.perf_counter()
    return ChatResult(answer, timing, answer.outcome(broken))


def _read_event_stream(
    response: httpx.Response,
    answer: CompletionAccumulator,
    sink: ChatSink,
    timing: Timing,
    url: str,
) -> AssistersError | None:
    """Feed every network read through the decoder; returns how the transport broke, if it did."""
    decoder = SSEDecoder()
    feed = decoder.feed
    apply = answer.apply
    try:
        for chunk in response.iter_bytes():
            if timing.first_byte is None:
                timing.first_byte = time.perf_counter()
            for item in feed(chunk):
                apply(item)
                if answer.stopped:
                    break
            _deliver(answer, sink, timing)
            if answer.stopped:
                return None
    except httpx.HTTPError as exc:
        return transport_error(exc, url)
    finally:
        decoder.close()
    return None


def _read_json_reply(
    response: httpx.Response, answer: CompletionAccumulator, sink: ChatSink, timing: Timing
) -> None:
    body = response.read()
    timing.first_byte = time.perf_counter()
    payload = parse_json(body)
    if payload is None:
        raise ProtocolError("the server replied application/json, but the body is not JSON")
    answer.apply_completion(payload)
    _deliver(answer, sink, timing)


def _deliver(answer: CompletionAccumulator, sink: ChatSink, timing: Timing) -> None:
    if answer.new_reasoning:
        if timing.first_token is None:
            timing.first_token = time.perf_counter()
        sink.reasoning(answer.take_reasoning())
    if answer.new_text:
        if timing.first_token is None:
            timing.first_token = time.perf_counter()
        sink.text(answer.take_text())
