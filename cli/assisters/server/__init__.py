"""A local OpenAI-compatible chat completions server for demos, tests and benchmarks.

Why it exists: the CLI must be exercised over a real socket without a network, an API
key or a bill, and its failure handling (error statuses, ``Retry-After``, cut streams,
stalls, broken JSON, slow first tokens) can only be trusted if those failures can be
produced on demand. The server answers what a chat client needs (``GET /v1/models`` and
``POST /v1/chat/completions``, streaming or not) with two fake models:

* ``echo`` answers with the last user message, split into word tokens that keep their
  whitespace, so the concatenated deltas reproduce the message byte for byte;
* ``lorem`` writes deterministic lorem-ipsum text paced at ``tokens_per_second``.

Both continue a final assistant message (a resumed answer) instead of starting over;
see :func:`continued`.

Faults are chosen with :class:`ServeOptions`. Standard library only (plus orjson, a
project dependency) and nothing from click, so tests and ``assisters serve`` share it.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
import re
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import orjson

from assisters.errors import RequestError
from assisters.recording import load_recording, looks_like_recording

MODELS = ("echo", "lorem")
LOREM_DEFAULT_TOKENS = 64
MAX_CHOICES = 8
MAX_TOKENS_LIMIT = 1_000_000
MAX_BODY_BYTES = 16 * 1024 * 1024

_MODELS_CREATED = 1_700_000_000  # fixed, so /v1/models answers are reproducible
_IDLE_TIMEOUT = 60.0  # seconds a silent or non-reading client may hold a handler thread
_POLL_INTERVAL = 0.05  # upper bound on how long shutdown() waits for the accept loop
_MALFORMED_EVENT = b'data: {"choices": [\n\n'
_DONE_EVENT = b"data: [DONE]\n\n"
_TOKEN_RE = re.compile(r"\s*\S+|\s+")
_EVENT_END_RE = re.compile(rb"(?<=\r\n\r\n)|(?<=\n\n)|(?<=\r\r)")
_LOREM_WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor",
    "incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud",
    "exercitation ullamco laboris nisi aliquip ex ea commodo consequat duis aute irure",
    "in reprehenderit voluptate velit esse cillum fugiat nulla pariatur excepteur sint",
    "occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim id est",
    "laborum",
)
_LOREM_VOCABULARY = tuple(word for line in _LOREM_WORDS for word in line.split())


@dataclass
class ServeOptions:
    """How the server behaves; every fault is off by default.

    Streaming faults count *content* chunks (one token of one choice each), not the
    role, finish or usage chunks, so ``drop_after=3`` means "three tokens got through".
    ``drop_after_bytes`` counts bytes of the SSE body instead (before chunked framing).
    Both cut only the first ``drop_times`` streaming chat requests (0: every one), so
    a client that resumes gets a complete answer on its next request.
    """

    host: str = "127.0.0.1"
    port: int = 0  # 0 picks a free port
    tokens_per_second: float = 50.0  # pacing for model "lorem" (0 = no pause)
    fail_status: int | None = None  # answer this HTTP status with an OpenAI-style error ...
    fail_times: int = 1  # ... for the first K chat requests (then normal); 0 = forever
    retry_after: float | None = None  # send Retry-After: S with the injected failure
    drop_after: int | None = None  # streaming: cut the connection after N content chunks
    drop_after_bytes: int | None = None  # streaming: cut after exactly B body bytes
    drop_times: int = 1  # the drops apply to the first K streaming requests; 0 = all
    reset: bool = False  # drop with a TCP RST ("connection reset") instead of a FIN
    stall_after: int | None = None  # streaming: after N content chunks, pause ...
    stall_seconds: float = 0.0  # ... this long, then continue
    malformed_at: int | None = None  # streaming: the Nth content chunk (1-based) is not JSON
    first_token_delay_ms: float = 0.0  # pause before the first chunk
    head_delay: float = 0.0  # seconds to wait before the response head of a chat request
    drip_ms: float | None = None  # streaming: one body byte per HTTP chunk, MS apart
    echo_prefix: bool = False  # continuing: send the given prefix again before the rest
    replay: Path | None = None  # answer every chat request with a recording (or raw SSE bytes)
    default_model: str | None = None  # serve unknown model names with this model
    verbose: bool = False  # one stderr line per request: method, path, status

    def __post_init__(self) -> None:
        problems = _option_problems(self)
        if problems:
            raise ValueError("invalid server options: " + "; ".join(problems))
        if self.replay is not None:
            self.replay = Path(self.replay)


def _option_problems(o: ServeOptions) -> list[str]:
    """Reject nonsense early, so a typo fails at startup instead of as an odd stream."""
    checks = {
        "port must be 0..65535": 0 <= o.port <= 65535,
        "tokens_per_second must be >= 0": o.tokens_per_second >= 0,
        "fail_status must be 400..599": o.fail_status is None or 400 <= o.fail_status <= 599,
        "fail_times must be >= 0": o.fail_times >= 0,
        "retry_after must be >= 0": o.retry_after is None or o.retry_after >= 0,
        "drop_after must be >= 0": o.drop_after is None or o.drop_after >= 0,
        "drop_after_bytes must be >= 0": o.drop_after_bytes is None or o.drop_after_bytes >= 0,
        "drop_times must be >= 0": o.drop_times >= 0,
        "stall_after must be >= 0": o.stall_after is None or o.stall_after >= 0,
        "stall_seconds must be >= 0": o.stall_seconds >= 0,
        "malformed_at must be >= 1": o.malformed_at is None or o.malformed_at >= 1,
        "first_token_delay_ms must be >= 0": o.first_token_delay_ms >= 0,
        "head_delay must be a finite number >= 0": 0 <= o.head_delay < math.inf,
        "drip_ms must be a finite number >= 0": o.drip_ms is None or 0 <= o.drip_ms < math.inf,
    }
    return [message for message, ok in checks.items() if not ok]


# --------------------------------------------------------------------------- tokens


def echo_tokens(text: str) -> list[str]:
    """Split text into word tokens that carry their leading whitespace.

    ``"hello big world"`` gives ``["hello", " big", " world"]``; trailing whitespace is a
    token of its own. Joining the tokens gives back ``text`` exactly, which is what lets
    tests check that a client reassembles deltas byte for byte.
    """
    return _TOKEN_RE.findall(text)


def lorem_tokens(seed: int = 0, index: int = 0) -> Iterator[str]:
    """Endless lorem-ipsum word tokens, the same for the same (seed, choice index).

    Deterministic so benchmarks and recordings can be compared run to run; the index
    makes the n choices of one request differ, as sampled choices would.
    """
    rng = random.Random(f"lorem:{seed}:{index}")
    prefix = ""
    while True:
        length = rng.randint(6, 14)
        for position in range(length):
            word = rng.choice(_LOREM_VOCABULARY)
            if position == 0:
                word = word.capitalize()
            if position == length - 1:
                word += "."
            elif position > 2 and rng.random() < 0.1:
                word += ","
            yield prefix + word
            prefix = " "


# -------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An OpenAI-style error answer; raised anywhere before a response starts, it is sent."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = headers or {}
        self.close = close  # the request framing is unknown: the connection cannot be reused

    def body(self) -> dict[str, Any]:
        """The JSON object OpenAI sends, so SDKs parse our errors like theirs."""
        error = {"message": self.message, "type": self.type, "param": self.param}
        return {"error": {**error, "code": self.code}}


def injected_failure(options: ServeOptions, number: int) -> ApiError | None:
    """The error chat request ``number`` (1-based) must get, if the options ask for one."""
    status = options.fail_status
    if status is None or (options.fail_times and number > options.fail_times):
        return None
    which = f"{number} of {options.fail_times}" if options.fail_times else f"request {number}"
    headers = {}
    if options.retry_after is not None:
        headers["Retry-After"] = _format_seconds(options.retry_after)
    type_, code = "invalid_request_error", None
    if status >= 500:
        type_ = "server_error"
    elif status == 429:
        type_, code = "requests", "rate_limit_exceeded"
    message = f"Injected failure: HTTP {status} ({which})"
    return ApiError(status, message, type_=type_, code=code, headers=headers)


def _format_seconds(seconds: float) -> str:
    """Whole seconds as an integer (what RFC 9110 allows), fractions as a decimal."""
    return str(int(seconds)) if seconds == int(seconds) else f"{seconds:g}"


# ------------------------------------------------------------------------- request


@dataclass(frozen=True)
class ChatRequest:
    """The parts of a chat completion request the fake models use."""

    model: str
    messages: list[dict[str, Any]]
    n: int = 1
    limit: int | None = None  # max_completion_tokens, else max_tokens
    seed: int = 0
    stream: bool = False
    include_usage: bool = False
    prefix: str | None = None  # the final assistant message to continue, if any


def parse_chat_request(body: bytes, default_model: str | None = None) -> ChatRequest:
    """Validate a request body the way OpenAI does, raising ApiError (400/404) if bad."""
    data = _json_object(body)
    if default_model and isinstance(data.get("model"), str) and data["model"] not in MODELS:
        data["model"] = default_model
    model = _model_of(data)
    messages = _messages_of(data)
    limit = _int_field(data, "max_completion_tokens", None, 1, MAX_TOKENS_LIMIT)
    if limit is None:
        limit = _int_field(data, "max_tokens", None, 1, MAX_TOKENS_LIMIT)
    return ChatRequest(
        model=model,
        messages=messages,
        n=_int_field(data, "n", 1, 1, MAX_CHOICES) or 1,
        limit=limit,
        seed=_int_field(data, "seed", 0, None, None) or 0,
        stream=_bool_field(data, "stream"),
        include_usage=_include_usage(data),
        prefix=_prefix_of(data, messages),
    )


def _prefix_of(data: dict[str, Any], messages: list[dict[str, Any]]) -> str | None:
    """The text of a final assistant message the answer must continue, else None.

    vLLM continues it with ``continue_final_message: true`` (and refuses that together
    with ``add_generation_prompt: true``); llama.cpp continues it without being asked.
    So a final assistant message is continued unless ``continue_final_message`` is
    explicitly false, in which case it is answered like any conversation.
    """
    continue_final = _optional_bool(data, "continue_final_message")
    if continue_final and _optional_bool(data, "add_generation_prompt"):
        message = "Cannot set both `continue_final_message` and `add_generation_prompt` to True."
        raise ApiError(400, message, param="continue_final_message")
    if continue_final is False or messages[-1].get("role") != "assistant":
        return None
    return message_text(messages[-1])


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        message = f"We could not parse the JSON body of your request: {exc}"
        raise ApiError(400, message) from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return data


def _model_of(data: dict[str, Any]) -> str:
    model = data.get("model")
    if model is None:
        raise ApiError(400, "You must provide a model parameter.", param="model")
    if not isinstance(model, str):
        raise ApiError(400, "Invalid type for 'model': expected a string.", param="model")
    if model not in MODELS:
        message = f"The model `{model}` does not exist or you do not have access to it."
        raise ApiError(404, message, param="model", code="model_not_found")
    return model


def _messages_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    messages = data.get("messages")
    if messages is None:
        message = "Missing required parameter: 'messages'."
        raise ApiError(400, message, param="messages", code="missing_required_parameter")
    if not isinstance(messages, list):
        raise ApiError(400, "Invalid type for 'messages': expected an array.", param="messages")
    if not messages:
        message = "Invalid 'messages': empty array. Expected an array with minimum length 1."
        raise ApiError(400, message, param="messages", code="empty_array")
    for i, item in enumerate(messages):
        if not isinstance(item, dict):
            message = f"Invalid type for 'messages[{i}]': expected an object."
            raise ApiError(400, message, param=f"messages[{i}]")
    return messages


def _int_field(
    data: dict[str, Any], name: str, default: int | None, low: int | None, high: int | None
) -> int | None:
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(400, f"Invalid type for '{name}': expected an integer.", param=name)
    if (low is not None and value < low) or (high is not None and value > high):
        message = f"Invalid '{name}': {value} is outside the allowed range {low}..{high}."
        raise ApiError(400, message, param=name)
    return value


def _bool_field(data: dict[str, Any], name: str) -> bool:
    return bool(_optional_bool(data, name))


def _optional_bool(data: dict[str, Any], name: str) -> bool | None:
    value = data.get(name)
    if value is not None and not isinstance(value, bool):
        raise ApiError(400, f"Invalid type for '{name}': expected a boolean.", param=name)
    return value


def _include_usage(data: dict[str, Any]) -> bool:
    options = data.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        message = "Invalid type for 'stream_options': expected an object."
        raise ApiError(400, message, param="stream_options")
    return _bool_field(options, "include_usage")


def message_text(message: dict[str, Any]) -> str:
    """A message's text: a string content, or its ``text`` parts joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    return ""


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """A rough count (words), good enough for usage numbers that only need to be plausible."""
    return sum(len(message_text(m).split()) for m in messages)


@dataclass
class _Plan:
    """What one choice will send: its tokens and the finish_reason it ends with.

    ``echoed`` is how many of the first tokens only repeat the prefix (``echo_prefix``):
    they are not generated, so they are neither paced nor counted as completion tokens.
    """

    tokens: Iterator[str]
    finish: str
    echoed: int = 0


def _choice_plan(request: ChatRequest, index: int, echo_prefix: bool = False) -> _Plan:
    """The tokens of one choice and the finish_reason it will end with."""
    tokens, finish = _full_answer(request, index)
    if request.prefix is None:
        return _Plan(tokens, finish)
    rest = continued(tokens, len(request.prefix))
    if not echo_prefix:
        return _Plan(rest, finish)
    again = echo_tokens(request.prefix)
    return _Plan(itertools.chain(again, rest), finish, len(again))


def _full_answer(request: ChatRequest, index: int) -> tuple[Iterator[str], str]:
    """The whole answer to the conversation, as if no final assistant message were there.

    ``echo`` repeats the last *user* message; ``lorem`` depends only on ``seed`` and the
    choice index, never on the messages, so a resumed request gets the same text.
    ``max_tokens`` limits this whole answer, prefix included, so that a resumed answer
    ends exactly where the uninterrupted one would have.
    """
    if request.model == "echo":
        tokens = echo_tokens(_last_user_text(request.messages))
        if request.limit is not None and len(tokens) > request.limit:
            return iter(tokens[: request.limit]), "length"
        return iter(tokens), "stop"
    words = lorem_tokens(request.seed, index)
    if request.limit is None:
        return itertools.islice(words, LOREM_DEFAULT_TOKENS), "stop"
    return itertools.islice(words, request.limit), "length"


def continued(tokens: Iterator[str], skip: int) -> Iterator[str]:
    """The tokens of a full answer after its first ``skip`` characters (code points).

    This is how a final assistant message (the prefix) is continued: the answer goes on
    after ``len(prefix)`` characters of the full answer. If the prefix ends inside a
    token, the first token sent is the rest of that token. An empty prefix gives the
    whole answer; one at least as long as the answer leaves nothing to send (the
    finish_reason is still the full answer's). The prefix is trusted for its length
    only: if it is not a prefix of the full answer (a client that mangled its text),
    the answer still goes on after that many characters, so prefix + continuation has
    the full answer's length and the mismatch stays visible.
    """
    for token in tokens:
        if skip <= 0:
            yield token
        elif skip < len(token):
            yield token[skip:]
        skip -= len(token)


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
        prompt = _prompt_tokens(self.request.messages)
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


# -------------------------------------------------------------------------- stream


class _StreamAborted(Exception):
    """The stream ended early on purpose (drop) or because the client or server left."""


class _EventStream:
    """One chunked ``text/event-stream`` response, each event sent and flushed at once.

    It also applies the streaming faults, because they are defined in terms of the
    content chunks that pass through here.
    """

    def __init__(self, handler: ChatRequestHandler, may_drop: bool = True) -> None:
        self._handler = handler
        self._chat = handler.chat
        self._options = handler.chat.options
        self._may_drop = may_drop  # drop_after and drop_after_bytes apply to this stream
        self.content_sent = 0
        self.body_sent = 0  # SSE bytes, not counting the chunked framing
        self._stalled = False

    @property
    def options(self) -> ServeOptions:
        return self._options

    def open(self, status: int = 200, reason: str | None = None,
             headers: list[tuple[str, str]] | None = None) -> None:
        handler = self._handler
        handler.send_response(status, reason)
        if headers is None:
            headers = [("Content-Type", "text/event-stream; charset=utf-8"),
                       ("Cache-Control", "no-cache")]
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Transfer-Encoding", "chunked")
        self._guarded(handler.end_headers)
        if self._byte_budget() == 0:
            self._drop()

    def write(self, data: bytes) -> None:
        """Send ``data`` as one HTTP chunk (the wfile is unbuffered: it goes out now).

        With ``drip_ms`` each byte is a chunk of its own, ``drip_ms`` apart; with
        ``drop_after_bytes`` the connection is cut once exactly that many body bytes
        are out, even in the middle of ``data``.
        """
        budget = self._byte_budget()
        cut = budget is not None and len(data) >= budget
        if budget is not None:
            data = data[:budget]
        drip = self._options.drip_ms
        if drip is None:
            self._send(data)
        else:
            for i in range(len(data)):
                if self.body_sent:
                    self.pause(drip / 1000)
                self._send(data[i : i + 1])
        if cut:
            self._drop()

    def _send(self, data: bytes) -> None:
        if data:  # an empty chunk would end the body
            self._guarded(self._handler.wfile.write, b"%x\r\n%s\r\n" % (len(data), data))
            self.body_sent += len(data)

    def _byte_budget(self) -> int | None:
        """How many more body bytes may go out before the cut, if one is due."""
        limit = self._options.drop_after_bytes
        if limit is None or not self._may_drop:
            return None
        return max(limit - self.body_sent, 0)

    def event(self, payload: dict[str, Any]) -> None:
        self.write(b"data: " + orjson.dumps(payload) + b"\n\n")

    def content(self, payload: dict[str, Any]) -> None:
        """A token chunk: the unit drop_after, stall_after and malformed_at count."""
        self.checkpoint()
        self.content_sent += 1
        if self.content_sent == self._options.malformed_at:
            self.write(_MALFORMED_EVENT)
        else:
            self.event(payload)

    def checkpoint(self) -> None:
        """Stall or drop here if that many content chunks are out."""
        options = self._options
        stall_after = options.stall_after
        if stall_after is not None and not self._stalled and self.content_sent >= stall_after:
            self._stalled = True
            self.pause(options.stall_seconds)
        drop_after = options.drop_after
        if drop_after is not None and self._may_drop and self.content_sent >= drop_after:
            self._drop()

    def pause(self, seconds: float) -> None:
        """Sleep, but wake up and give up at once when the server shuts down."""
        if seconds > 0 and self._chat.stopping.wait(seconds):
            self._handler.close_connection = True
            raise _StreamAborted

    def end(self) -> None:
        """The zero-length chunk that tells the client the body is complete."""
        self._guarded(self._handler.wfile.write, b"0\r\n\r\n")

    def drop(self) -> NoReturn:
        """Cut the connection now, as a failing server would."""
        self._drop()

    def _drop(self) -> NoReturn:
        # A FIN without the terminating chunk: the client sees a truncated chunked body.
        # With ``reset``, an RST instead: the client sees "connection reset by peer".
        self._handler.close_connection = True
        connection = self._handler.connection
        with contextlib.suppress(OSError):
            if self._options.reset:
                self._wait_sent(connection)
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # close() would wait for the handler's file objects; detach and close the
                # descriptor now. The socket object is left closed, so nothing reuses it.
                os.close(connection.detach())
            else:
                connection.shutdown(socket.SHUT_RDWR)
        raise _StreamAborted

    def _wait_sent(self, connection: socket.socket, limit: float = 1.0) -> None:
        """Give the bytes already written a moment to leave: an RST discards the rest."""
        try:  # Linux and the BSDs; elsewhere, no wait
            import fcntl
            import termios

            outq = termios.TIOCOUTQ
        except (ImportError, AttributeError):
            return
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and not self._chat.stopping.is_set():
            pending = fcntl.ioctl(connection.fileno(), outq, b"\0\0\0\0")
            if not struct.unpack("i", pending)[0]:
                return
            time.sleep(0.001)

    def _guarded(self, send: Callable[..., object], *args: object) -> None:
        try:
            send(*args)
        except OSError:  # BrokenPipe, ConnectionReset, timeout: the client is gone
            self._handler.close_connection = True
            if not self._chat.stopping.is_set():
                self._chat.note_disconnect()
            raise _StreamAborted from None


def stream_completion(stream: _EventStream, request: ChatRequest) -> None:
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


def write_replay(stream: _EventStream, path: Path) -> None:
    """Answer a chat request with a recording instead of a model.

    A recording made with ``--save`` is served with its status, headers and body
    reads (one HTTP chunk per read, as fast as possible). Any other file is taken
    as raw SSE bytes, sent as ``200 text/event-stream`` in pieces split after each
    blank line.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ApiError(500, f"Cannot read the replay file: {exc}", type_="server_error") from None
    if looks_like_recording(data):
        try:
            recording = load_recording(path)
        except RequestError as exc:
            raise ApiError(500, f"Cannot replay: {exc.message}", type_="server_error") from None
        if recording.head is None:
            raise ApiError(502, "The recording holds no response.", type_="server_error")
        stream.open(recording.head.status, recording.head.reason, _replayable(recording.head.headers))
        pieces = [piece for _, piece in recording.reads]
        broke = recording.error is not None
    else:
        stream.open()
        pieces, broke = split_events(data), False
    stream.pause(stream.options.first_token_delay_ms / 1000)
    for piece in pieces:
        stream.write(piece)
    if broke:  # the recorded connection broke: so does this one
        stream.drop()
    stream.end()


_HOP_BY_HOP = {"transfer-encoding", "content-length", "connection", "keep-alive", "date", "server"}


def _replayable(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]


def split_events(data: bytes) -> list[bytes]:
    """Cut raw SSE bytes after each blank line (LF, CRLF or CR endings), keeping every byte."""
    return [piece for piece in _EVENT_END_RE.split(data) if piece]


# ------------------------------------------------------------------------- handler


class ChatRequestHandler(BaseHTTPRequestHandler):
    """Routes requests to the fake models; HTTP/1.1 so connections are kept alive."""

    protocol_version = "HTTP/1.1"
    server_version = "assisters-serve"
    disable_nagle_algorithm = True  # TCP_NODELAY: each SSE event leaves at once
    timeout = _IDLE_TIMEOUT
    server: _HTTPServer

    @property
    def chat(self) -> ChatServer:
        return self.server.chat

    def setup(self) -> None:
        super().setup()
        self.chat.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.chat.untrack(self.connection)

    def version_string(self) -> str:
        """The Server header: our name only, no Python version."""
        return self.server_version

    def do_GET(self) -> None:  # the name http.server looks for
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One line per request when verbose: method, path without query, status."""
        if self.chat.options.verbose:
            path = urlsplit(self.path).path
            sys.stderr.write(f"{self.command} {path} {int(code)}\n")

    def log_message(self, fmt: str, *args: Any) -> None:
        """Quiet unless verbose; headers (and so API keys) are never logged."""
        if self.chat.options.verbose:
            sys.stderr.write(f"{fmt % args}\n")

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
            self._route()(body)
        except ApiError as err:
            self._send_error(err)

    def _route(self) -> Callable[[bytes], None]:
        path = api_path(self.path)
        if path == "/chat/completions":
            return self._allow("POST", self._chat_completions)
        if path == "/models":
            return self._allow("GET", self._list_models)
        if path.startswith("/models/"):
            return self._allow("GET", self._get_model)
        message = f"Invalid URL ({self.command} {urlsplit(self.path).path})"
        raise ApiError(404, message)

    def _allow(self, method: str, action: Callable[[bytes], None]) -> Callable[[bytes], None]:
        if self.command != method:
            message = f"Method {self.command} is not allowed here; use {method}."
            raise ApiError(405, message, headers={"Allow": method})
        return action

    def _list_models(self, _body: bytes) -> None:
        self.send_json(200, {"object": "list", "data": [_model_object(m) for m in MODELS]})

    def _get_model(self, _body: bytes) -> None:
        model = api_path(self.path).removeprefix("/models/")
        if model not in MODELS:
            message = f"The model `{model}` does not exist or you do not have access to it."
            raise ApiError(404, message, param="model", code="model_not_found")
        self.send_json(200, _model_object(model))

    def _chat_completions(self, body: bytes) -> None:
        options = self.chat.options
        number = self.chat.note_request()
        if options.head_delay and self.chat.stopping.wait(options.head_delay):
            self.close_connection = True  # shutting down: no answer at all
            return
        failure = injected_failure(options, number)
        if failure is not None:
            raise failure
        if options.replay is not None:
            self._streaming(write_replay, options.replay)
            return
        request = parse_chat_request(body, options.default_model)
        if request.stream:
            self._streaming(stream_completion, request)
        else:
            self._complete(request)

    def _streaming(self, write: Callable[[_EventStream, Any], None], arg: Any) -> None:
        """Stream an answer; only the first ``drop_times`` streams (0: all) may be cut."""
        number = self.chat.stream_started()
        drop_times = self.chat.options.drop_times
        try:
            write(_EventStream(self, may_drop=not drop_times or number <= drop_times), arg)
        except _StreamAborted:
            pass
        finally:
            self.chat.stream_ended()

    def _complete(self, request: ChatRequest) -> None:
        """Answer a non-streaming request after the time generating it would have taken."""
        options = self.chat.options
        completion = _Completion(request)
        plans = [_choice_plan(request, i, options.echo_prefix) for i in range(request.n)]
        texts: list[list[str]] = [[] for _ in plans]
        rounds = 0
        for number, step in enumerate(_rounds([plan.tokens for plan in plans])):
            rounds += number >= plans[0].echoed
            for index, token in step:
                texts[index].append(token)
                completion.completion_tokens += number >= plans[index].echoed
        wait = options.first_token_delay_ms / 1000 + rounds * _token_delay(options, request)
        if wait > 0 and self.chat.stopping.wait(wait):
            self.close_connection = True
            return
        finishes = [plan.finish for plan in plans]
        self.send_json(200, completion.response(["".join(t) for t in texts], finishes))

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        """A complete JSON response with Content-Length, so the connection can be reused."""
        body = orjson.dumps(payload)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, err: ApiError) -> None:
        if err.close:
            self.close_connection = True
        self.send_json(err.status, err.body(), err.headers)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0:
            raise ApiError(400, "Invalid Content-Length header.", close=True)
        if length > MAX_BODY_BYTES:
            raise _too_large()
        return self._read_exact(length)

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while size := self._chunk_size():
            total += size
            if total > MAX_BODY_BYTES:
                raise _too_large()
            parts.append(self._read_exact(size))
            if self.rfile.readline(3).rstrip(b"\r\n"):
                raise ApiError(400, "Malformed chunked request body.", close=True)
        while self.rfile.readline(8192).rstrip(b"\r\n"):
            pass  # trailer fields, ignored
        return b"".join(parts)

    def _chunk_size(self) -> int:
        line = self.rfile.readline(1024)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            size = -1
        if size < 0:
            raise ApiError(400, "Malformed chunked request body.", close=True)
        return size

    def _read_exact(self, length: int) -> bytes:
        data = self.rfile.read(length)
        if len(data) < length:
            raise ConnectionResetError("client closed the connection inside the body")
        return data


def api_path(raw: str) -> str:
    """The route part of a request path: no query, no trailing slash, no /v1 prefix."""
    path = urlsplit(raw).path.rstrip("/")
    if path == "/v1" or path.startswith("/v1/"):
        path = path[3:]
    return path or "/"


def _model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": _MODELS_CREATED, "owned_by": "assisters"}


def _too_large() -> ApiError:
    message = f"The request body is larger than {MAX_BODY_BYTES} bytes."
    return ApiError(413, message, close=True)


# -------------------------------------------------------------------------- server


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its ChatServer and keeps client hang-ups quiet."""

    daemon_threads = True
    block_on_close = False  # shutdown() closes the connections itself; never hang on them

    def __init__(self, address: tuple[str, int], chat: ChatServer) -> None:
        self.chat = chat
        super().__init__(address, ChatRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn): slow offline, unused.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away: nothing to report
        super().handle_error(request, client_address)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class ChatServer:
    """The local server: start it in the background for tests, or in the foreground.

    ``requests_seen`` counts chat requests received, ``streams_seen`` the streaming
    answers begun (the count ``drop_times`` uses), ``disconnects`` the streams the
    client abandoned, ``active_streams`` the streams in progress; tests assert on them.
    """

    def __init__(self, options: ServeOptions) -> None:
        if options.replay is not None and not Path(options.replay).is_file():
            raise FileNotFoundError(f"replay file not found: {options.replay}")
        self.options = options
        self.requests_seen = 0
        self.streams_seen = 0
        self.disconnects = 0
        self.active_streams = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        self._started = False
        self._closed = False
        server_class = _HTTPServer6 if ":" in options.host else _HTTPServer
        self._httpd = server_class((options.host, options.port), self)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The URL to give a client, e.g. ``http://127.0.0.1:PORT/v1``."""
        host = str(self._httpd.server_address[0])
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/v1"

    def serve_forever(self) -> None:
        """Serve in this thread until shutdown() is called from another one (or Ctrl-C)."""
        self._started = True
        self._httpd.serve_forever(poll_interval=_POLL_INTERVAL)

    def start_background(self) -> None:
        """Serve from a daemon thread, so a test or benchmark can be the client."""
        if self._started:
            raise RuntimeError("the server is already running")
        self._started = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"assisters-serve-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def shutdown(self) -> None:
        """Stop accepting, end streams and idle connections, close the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.stopping.set()
        if self._started:
            self._httpd.shutdown()
        self._close_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ChatServer:
        self.start_background()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def note_request(self) -> int:
        """Count a chat request; its 1-based number decides whether a failure is injected."""
        with self._lock:
            self.requests_seen += 1
            return self.requests_seen

    def note_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1

    def stream_started(self) -> int:
        """Count a streaming answer; its 1-based number decides whether it may be cut."""
        with self._lock:
            self.active_streams += 1
            self.streams_seen += 1
            return self.streams_seen

    def stream_ended(self) -> None:
        with self._lock:
            self.active_streams -= 1

    def track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _close_connections(self) -> None:
        # Wakes handlers blocked reading an idle keep-alive connection or writing a stream.
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
