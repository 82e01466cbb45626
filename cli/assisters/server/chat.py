"""``POST /v1/chat/completions``: the scripted models' answers, streamed or whole.

The streaming faults are applied by :class:`~assisters.server.event_stream.EventStream`,
the HTTP failures by :func:`~assisters.server.faults.injected_failure`.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from assisters.server.chat_request import ChatRequest, last_user_text, parse_chat_request, prompt_tokens
from assisters.server.event_stream import EventStream, Responder, StreamAborted
from assisters.server.faults import context_overflow, injected_failure
from assisters.server.models import LOREM_DEFAULT_TOKENS, StopAt, continued, echo_tokens, lorem_tokens
from assisters.server.options import ServeOptions
from assisters.server.replay import write_replay

_DONE_EVENT = b"data: [DONE]\n\n"


def chat_completions(handler: Responder, body: bytes) -> None:
    """The endpoint: injected failures first, then a replay or a scripted model."""
    state = handler.state
    options = state.options
    number = state.note_request()
    handler.answer_headers["x-request-id"] = f"req_{uuid.uuid4().hex[:24]}"
    refusal, limit_headers = state.limits.check(body)
    handler.answer_headers.update(limit_headers)
    if refusal is not None:
        raise refusal
    if options.latency_ms and state.stopping.wait(options.latency_ms / 1000):
        handler.close_connection = True
        return
    if options.head_delay and state.stopping.wait(options.head_delay):
        handler.close_connection = True  # shutting down: no answer at all
        return
    failure = injected_failure(options, number)
    if failure is not None:
        raise failure
    if options.replay is not None:
        _streaming(handler, write_replay, options.replay)
        return
    request = parse_chat_request(body, options.default_model)
    overflow = context_overflow(options, prompt_tokens(request.messages))
    if overflow is not None:
        raise overflow
    if request.stream:
        _streaming(handler, stream_completion, request)
    else:
        _complete(handler, request)


def _streaming(handler: Responder, write: Callable[[EventStream, Any], None], arg: Any) -> None:
    """Stream an answer; only the first ``drop_times`` streams (0: all) may be cut."""
    state = handler.state
    number = state.stream_started()
    drop_times = state.options.drop_times
    try:
        write(EventStream(handler, may_drop=not drop_times or number <= drop_times), arg)
    except StreamAborted:
        pass
    finally:
        state.stream_ended()


def _complete(handler: Responder, request: ChatRequest) -> None:
    """Answer a non-streaming request after the time generating it would have taken."""
    options = handler.state.options
    body, generating = complete_body(request, options)
    wait = options.first_token_delay_ms / 1000 + generating
    if wait > 0 and handler.state.stopping.wait(wait):
        handler.close_connection = True
        return
    handler.send_json(200, body)


def complete_body(request: ChatRequest, options: ServeOptions) -> tuple[dict[str, Any], float]:
    """One whole ``chat.completion`` object, made without HTTP, and the seconds that
    generating it takes at the ``lorem`` pace (the endpoint waits that long before
    answering; the batch runner of :mod:`~assisters.server.batch_runner` does not)."""
    completion = _Completion(request)
    plans = [_choice_plan(request, i, options.echo_prefix) for i in range(request.n)]
    texts: list[list[str]] = [[] for _ in plans]
    rounds = 0
    for number, step in enumerate(_rounds([plan.tokens for plan in plans])):
        rounds += number >= plans[0].echoed
        for index, token in step:
            texts[index].append(token)
            completion.completion_tokens += number >= plans[index].echoed
    finishes = [plan.finish for plan in plans]
    body = completion.response(["".join(t) for t in texts], finishes)
    return body, rounds * _token_delay(options, request)


def stream_completion(stream: EventStream, request: ChatRequest) -> None:
    """Answer a ``stream: true`` request: role chunks, tokens, finishes, usage, [DONE]."""
    options = stream.options
    completion = _Completion(request)
    plans = [_choice_plan(request, i, options.echo_prefix) for i in range(request.n)]
    stream.open()
    stream.pause(options.first_token_delay_ms / 1000)
    for index in range(request.n):
        stream.event(completion.chunk(index, {"role": "assistant", "content": ""}))
    delay = _token_delay(options, request)
    for number, step in enumerate(_rounds([plan.tokens for plan in plans])):
        if number >= plans[0].echoed:  # a repeated prefix is not generated: no pacing
            stream.pause(delay)
        for index, token in step:
            stream.content(completion.chunk(index, {"content": token}))
            if number >= plans[index].echoed:
                completion.completion_tokens += 1
    stream.checkpoint()
    for index, plan in enumerate(plans):
        stream.event(completion.chunk(index, {}, plan.finish))
    if request.include_usage:
        stream.event(completion.usage_chunk())
    stream.write(_DONE_EVENT)
    stream.end()



@dataclass
class _Plan:
    """What one choice will send: its tokens and the finish_reason it ends with.

    ``echoed`` is how many of the first tokens only repeat the prefix (``echo_prefix``):
    they are not generated, so they are neither paced nor counted as completion tokens.
    ``finish`` is known once the tokens are used up (a stop sequence may end them).
    """

    tokens: Iterator[str]
    scan: StopAt
    limited: str  # the finish_reason when no stop sequence ends the answer
    echoed: int = 0

    @property
    def finish(self) -> str:
        return "stop" if self.scan.hit else self.limited


def _choice_plan(request: ChatRequest, index: int, echo_prefix: bool = False) -> _Plan:
    """The tokens of one choice and the finish_reason it will end with."""
    tokens, scan, finish = _full_answer(request, index)
    if request.prefix is None:
        return _Plan(tokens, scan, finish)
    rest = continued(tokens, len(request.prefix))
    if not echo_prefix:
        return _Plan(rest, scan, finish)
    again = echo_tokens(request.prefix)
    return _Plan(itertools.chain(again, rest), scan, finish, len(again))


def _full_answer(request: ChatRequest, index: int) -> tuple[Iterator[str], StopAt, str]:
    """The whole answer to the conversation, as if no final assistant message were there.

    ``echo`` repeats the last *user* message; ``lorem`` depends only on ``seed`` and the
    choice index, never on the messages, so a resumed request gets the same text.
    ``max_tokens`` limits this whole answer, prefix included, so that a resumed answer
    ends exactly where the uninterrupted one would have; a stop sequence within it
    ends it earlier (finish_reason ``stop``, the sequence itself not sent).
    """
    finish = "stop"
    tokens: Iterator[str]
    if request.model == "echo":
        words = echo_tokens(last_user_text(request.messages))
        if request.limit is not None and len(words) > request.limit:
            words, finish = words[: request.limit], "length"
        tokens = iter(words)
    elif request.limit is None:
        tokens = itertools.islice(lorem_tokens(request.seed, index), LOREM_DEFAULT_TOKENS)
    else:
        tokens, finish = itertools.islice(lorem_tokens(request.seed, index), request.limit), "length"
    scan = StopAt(tokens, request.stop)
    return iter(scan), scan, finish


def _rounds(choices: list[Iterator[str]]) -> Iterator[list[tuple[int, str]]]:
    """Token k of every choice together, so n choices interleave like a batched model."""
    while True:
        step = [(i, tok) for i, it in enumerate(choices) if (tok := next(it, None)) is not None]
        if not step:
            return
        yield step


def _token_delay(options: ServeOptions, request: ChatRequest) -> float:
    if request.model != "lorem" or options.tokens_per_second <= 0:
        return 0.0
    return 1.0 / options.tokens_per_second


@dataclass
class _Completion:
    """Identity and token counts shared by every chunk of one answer."""

    request: ChatRequest
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:24]}")
    created: int = field(default_factory=lambda: int(time.time()))
    completion_tokens: int = 0

    def chunk(
        self, index: int, delta: dict[str, Any], finish_reason: str | None = None
    ) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "finish_reason": finish_reason}
        return self._envelope("chat.completion.chunk", [choice], None)

    def usage_chunk(self) -> dict[str, Any]:
        return self._envelope("chat.completion.chunk", [], self.usage())

    def response(self, texts: list[str], finishes: list[str]) -> dict[str, Any]:
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
            }
            for i, (text, finish) in enumerate(zip(texts, finishes, strict=True))
        ]
        return {**self._envelope("chat.completion", choices, None), "usage": self.usage()}

    def usage(self) -> dict[str, int]:
        prompt = prompt_tokens(self.request.messages)
        total = prompt + self.completion_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": self.completion_tokens,
            "total_tokens": total,
        }

    def _envelope(
        self, kind: str, choices: list[dict[str, Any]], usage: dict[str, int] | None
    ) -> dict[str, Any]:
        payload = {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.request.model,
            "choices": choices,
        }
        if usage is not None or self.request.include_usage:
            payload["usage"] = usage  # null on every chunk but the last, as OpenAI does
        return payload
