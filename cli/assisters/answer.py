"""The answer being assembled: what the events of a chat completion stream mean.

:class:`Answer` takes SSE items (or one non-streamed JSON reply) and keeps what
a user may want from them: the text of every choice (selected by
its ``index`` field, never by position), reasoning, tool calls, the finish
reason, the last non-null usage, and whether the answer is complete.

Completion rules (the shared SSE corpus conventions):

* complete = ``data: [DONE]`` arrived, or choice 0 got a non-null
  ``finish_reason`` other than ``"error"``; ``[DONE]`` missing after a finish
  reason is complete with a warning;
* neither = incomplete, an error that keeps the partial text;
* ``event: error``, a non-null top-level ``error``, ``finish_reason: "error"``
  and an SSE line whose field is ``error`` are errors even if ``[DONE]`` follows;
* a data payload that is not JSON is counted; a stream that had any is a
  protocol error once it ends (the text around it is still shown).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from assisters.errors import (
    AssistersError,
    IncompleteStream,
    ProtocolError,
    StreamError,
)
from assisters.sse import MAX_LINE_BYTES, Comment, Event, Field, Item, SSEDecoder
from assisters.visible import one_line


@dataclass
class ChoiceState:
    """Everything one choice has received so far."""

    index: int
    role: str = "assistant"
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    _tool_slots: dict[int, int] = field(default_factory=dict)
    _current_tool: int | None = None

    def add_tool_call_deltas(self, deltas: list[Any]) -> None:
        """Fragments are keyed by their ``index``; a missing index continues the
        current call, and a new ``id`` at an index in use starts a new call.
        Values of the wrong type (an index that is not an integer, a name that
        is not a string) are ignored."""
        for delta in deltas:
            if not isinstance(delta, dict):
                continue
            slot = self._slot_for(delta)
            call = self.tool_calls[slot]
            if _text(delta.get("id")):
                call["id"] = delta["id"]
            if _text(delta.get("type")):
                call["type"] = delta["type"]
            fn = delta.get("function")
            if isinstance(fn, dict):
                call["function"]["name"] += _text(fn.get("name"))
                call["function"]["arguments"] += _text(fn.get("arguments"))
            self._current_tool = slot

    def _slot_for(self, delta: dict[str, Any]) -> int:
        index = delta.get("index")
        if index.__class__ is not int:
            index = None
        slot = self._current_tool if index is None else self._tool_slots.get(index)
        new_id = _text(delta.get("id"))
        if slot is not None and new_id and self.tool_calls[slot]["id"] not in ("", new_id):
            slot = None
        if slot is None:
            self.tool_calls.append(
                {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            )
            slot = len(self.tool_calls) - 1
            if index is not None:
                self._tool_slots[index] = slot
        return slot

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role, "content": "".join(self.content) or None}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return message


def _text(value: Any) -> str:
    """A string field of the server's JSON, or "" when it is anything else."""
    return value if isinstance(value, str) else ""


def choice_index(value: Any) -> int | None:
    """A choice's ``index``: an integer, 0 when missing or null (one choice), and
    None (the choice is ignored) for anything else, such as ``"1"`` or ``[0]``."""
    if value.__class__ is int:
        return value  # type: ignore[no-any-return]
    return None if value else 0


def json_text(value: Any) -> str:
    """A JSON value as compact text, for a message; ``str`` when orjson cannot
    write it (nested deeper than it allows)."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return str(value)


def error_message(payload: Any) -> str | None:
    """The server's own words from an error body: ``error.message``, ``error``
    when it is a string, ``message``, then ``detail``."""
    if not isinstance(payload, dict):
        return None
    err = payload.get("error")
    if isinstance(err, dict):
        msg = err.get("message")
        if isinstance(msg, str) and msg:
            return msg
    if isinstance(err, str) and err:
        return err
    msg = payload.get("message")
    if isinstance(msg, str) and msg:
        return msg
    detail = payload.get("detail")
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list) and detail:  # FastAPI validation errors
        first = detail[0]
        if isinstance(first, dict) and isinstance(first.get("msg"), str):
            return first["msg"]
    if isinstance(err, dict):
        return json_text(err)
    return None


def error_http_status(payload: Any) -> int | None:
    """An HTTP-like status carried inside an error object (``code`` or ``status``)."""
    if not isinstance(payload, dict):
        return None
    err = payload.get("error")
    for source in (err, payload):
        if isinstance(source, dict):
            for key in ("code", "status"):
                value = source.get(key)
                if isinstance(value, int) and 400 <= value <= 599:
                    return value
    return None


_loads = orjson.loads


def parse_json(data: str | bytes) -> Any:
    """orjson.loads, with ``None`` for data that is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


class Answer:
    """The answer as it is assembled from a chat completion stream; see the
    module docstring for the rules.

    ``apply`` (one SSE item) and ``apply_items`` (one read's items from
    :meth:`SSEDecoder.feed_data <assisters.sse.SSEDecoder.feed_data>`) are on the
    per-event path: new text of choice 0 is appended to ``new_text`` and new
    reasoning to ``new_reasoning`` for the caller to take after each network
    read. ``stopped`` becomes true at ``[DONE]`` or at the first error, when
    reading should end.

    ``keep_text=False`` keeps no text or reasoning beyond what the caller has
    not taken yet, so memory stays flat however long the answer; ``text`` and
    :meth:`completion_object` then have no content (tool calls, usage, the
    finish reason and the completion rules are unaffected).
    """

    def __init__(self, *, keep_text: bool = True) -> None:
        self.choices: dict[int, ChoiceState] = {}
        self.usage: dict[str, Any] | None = None
        self.meta: dict[str, Any] = {}
        self.done = False
        self.error: StreamError | None = None
        self.events = 0
        self.bad_payloads = 0
        self.first_bad_payload = ""
        self.last_unknown_line: str | None = None
        self.new_text: list[str] = []
        self.new_reasoning: list[str] = []
        self.keep_text = keep_text
        self._state0: ChoiceState | None = None  # choices[0], once it exists and meta is kept

    @property
    def stopped(self) -> bool:
        return self.done or self.error is not None

    @property
    def finish_reason(self) -> str | None:
        choice = self.choices.get(0)
        return choice.finish_reason if choice else None

    @property
    def text(self) -> str:
        choice = self.choices.get(0)
        return "".join(choice.content) if choice else ""

    def apply(self, item: Item) -> None:
        if self.stopped:
            return
        if type(item) is Event:
            self._event(item)
        elif type(item) is Field:
            self._field(item)
        elif not isinstance(item, Comment):
            raise TypeError(f"not an SSE item: {item!r}")

    def apply_items(self, items: list[bytes | Item]) -> None:
        """One read's items from ``SSEDecoder.feed_data``: bytes are the data of a
        ``message`` event. Stops at ``[DONE]`` or at the first error."""
        if self.done or self.error is not None:
            return
        for item in items:
            if item.__class__ is not bytes:
                self.apply(item)  # type: ignore[arg-type]
                if self.done or self.error is not None:
                    return
                continue
            self.events += 1
            try:
                chunk = _loads(item)  # type: ignore[arg-type]
            except orjson.JSONDecodeError:
                if self._not_json(item):  # type: ignore[arg-type]
                    return
                continue
            if chunk.__class__ is not dict:
                self.note_bad_payload(item.decode("utf-8", "replace"))  # type: ignore[union-attr]
                continue
            content = self._usual(chunk)
            if content is not None:
                if content:
                    self.new_text.append(content)
                continue
            self.apply_chunk(chunk)
            if self.error is not None:
                return

    def read_events(self, decoder: SSEDecoder, data: bytes) -> str:
        """One network read of an event stream that ``decoder`` decodes: the same
        as ``apply_items(decoder.feed_data(data))``, then returns ``take_text()``.

        The per-token path of ``chat``. The usual read (``decoder.idle`` and the
        read one ``data:`` line, see :class:`SSEDecoder`) is taken here, without
        the decoder; when its JSON is the usual chunk (one choice, index 0, no
        finish reason, a delta with content only, no usage or error, once choice
        0 and the metadata are known) nothing is built but the parsed JSON.
        """
        if (decoder.idle and data[-2:] == b"\n\n" and data[:6] == b"data: "
                and not self.done and self.error is None and len(data) <= MAX_LINE_BYTES):
            value = data[6:-2]
            if 10 not in value and 13 not in value:
                try:
                    chunk = _loads(value)
                except orjson.JSONDecodeError:
                    chunk = None  # [DONE], or not JSON: the general path below
                if chunk.__class__ is dict:
                    self.events += 1
                    content = self._usual(chunk)  # type: ignore[arg-type]
                    if content is None:
                        self.apply_chunk(chunk)  # type: ignore[arg-type]
                    elif not self.new_text:
                        return content
                    else:  # text left by an earlier apply goes first
                        self.new_text.append(content)
                    return self.take_text() if self.new_text else ""
        self.apply_items(decoder.feed_data(data))
        return self.take_text() if self.new_text else ""

    def _usual(self, chunk: dict[str, Any]) -> str | None:
        """The usual chunk, applied: one choice, index 0, no finish reason, a delta
        with content only, no usage or error, once choice 0 and the metadata are
        known. Returns its content (not yet in ``new_text``); None, with nothing
        applied, for any other chunk."""
        try:
            (choice,) = chunk["choices"]
            delta = choice["delta"]
            content = delta.get("content")
        except (LookupError, TypeError, ValueError, AttributeError):
            return None
        if (content.__class__ is str and len(delta) == 1 and not choice.get("index")
                and not choice.get("finish_reason")
                and ("usage" not in chunk or not chunk["usage"])
                and ("error" not in chunk or chunk["error"] is None)
                and (state := self._state0) is not None):
            if content and self.keep_text:
                state.content.append(content)
            return content  # type: ignore[no-any-return]
        return None

    def _not_json(self, data: bytes) -> bool:
        """A data payload that orjson refused: ``[DONE]`` (returns True: stop), an
        empty one, or one judged as the text an Event would carry (invalid UTF-8
        replaced, so it may still be JSON)."""
        if not data:
            return False
        if data.startswith(b"[DONE]"):
            self.done = True
            return True
        text = data.decode("utf-8", "replace")
        chunk = parse_json(text)
        if isinstance(chunk, dict):
            self.apply_chunk(chunk)
            return self.error is not None
        self.note_bad_payload(text)
        return False

    def apply_parsed(self, event: Event, payload: Any) -> None:
        """``apply(event)`` for an event whose data the caller already parsed
        with :func:`parse_json` (``payload``), so it is not parsed twice."""
        if self.stopped:
            return
        if event.type == "error" or not event.data or event.data.startswith("[DONE]"):
            self._event(event)
            return
        self.events += 1
        if not isinstance(payload, dict):
            self.note_bad_payload(event.data)
            return
        self.apply_chunk(payload)

    def _event(self, event: Event) -> None:
        data = event.data
        self.events += 1
        if event.type == "error":
            self._fail(parse_json(data), data)
            return
        if not data:
            return
        if data.startswith("[DONE]"):
            self.done = True
            return
        chunk = parse_json(data)
        if not isinstance(chunk, dict):
            self.note_bad_payload(data)
            return
        self.apply_chunk(chunk)

    def _field(self, item: Field) -> None:
        if item.name == "error":
            self._fail(parse_json(item.value), item.value)
        else:
            self.last_unknown_line = f"{item.name}:{item.value}" if item.value else item.name

    def note_bad_payload(self, data: str) -> None:
        """A data payload that is not a JSON object: counted, the first one kept."""
        if not self.bad_payloads:
            self.first_bad_payload = data
        self.bad_payloads += 1

    def _fail(self, payload: Any, raw: str) -> None:
        message = error_message(payload) or raw.strip() or "the server reported an error"
        self.error = StreamError(one_line(message, 400), error_http_status(payload))

    def apply_chunk(self, chunk: dict[str, Any]) -> None:
        """One ``chat.completion.chunk`` object.

        On the per-token path: ``x.__class__ is dict`` (and ``in`` before a
        lookup of a key that is usually absent) is tried before the general test.
        """
        if not self.meta:
            self._keep_meta(chunk)
        if "usage" in chunk and chunk["usage"] and isinstance(chunk["usage"], dict):
            self.usage = chunk["usage"]
        finished = False
        choices = chunk.get("choices")
        if choices and (choices.__class__ is list or isinstance(choices, list)):
            for choice in choices:
                if choice.__class__ is not dict and not isinstance(choice, dict):
                    continue
                index = choice_index(choice.get("index"))
                if index is None:
                    continue
                state = self.choices.get(index)
                if state is None:
                    state = self.choices[index] = ChoiceState(index)
                    if index == 0 and self.meta:
                        self._state0 = state
                delta = choice.get("delta")
                if delta and (delta.__class__ is dict or isinstance(delta, dict)):
                    content = delta.get("content")
                    if content.__class__ is str and len(delta) == 1:  # the usual delta
                        if content:
                            if self.keep_text:
                                state.content.append(content)
                            if index == 0:
                                self.new_text.append(content)
                    else:
                        self._delta(state, delta)
                finish = choice.get("finish_reason")
                if finish:
                    state.finish_reason = finish
                    finished = True
        if "error" in chunk and chunk["error"] is not None:
            self._fail(chunk, json_text(chunk["error"]))
        elif finished and self.finish_reason == "error":
            self._fail(chunk, "the server ended the answer with finish_reason 'error'")

    def _delta(self, state: ChoiceState, delta: dict[str, Any]) -> None:
        self._add_text(state, delta)
        tool_calls = delta.get("tool_calls")
        if tool_calls and isinstance(tool_calls, list):
            state.add_tool_call_deltas(tool_calls)
        if _text(delta.get("role")):
            state.role = delta["role"]

    def _add_text(self, state: ChoiceState, delta: dict[str, Any]) -> None:
        """Content and reasoning of a delta (or a whole message); DeepSeek names the
        reasoning ``reasoning_content``, vLLM and OpenRouter ``reasoning``."""
        content = delta.get("content")
        if content and isinstance(content, str):
            if self.keep_text:
                state.content.append(content)
            if state.index == 0:
                self.new_text.append(content)
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            if self.keep_text:
                state.reasoning.append(reasoning)
            if state.index == 0:
                self.new_reasoning.append(reasoning)

    def _keep_meta(self, chunk: dict[str, Any]) -> None:
        for key in ("id", "model", "created", "system_fingerprint"):
            value = chunk.get(key)
            if value and value.__class__ in (str, int):
                self.meta[key] = value

    def apply_completion(self, body: Any) -> None:
        """A whole non-streamed reply: a ``chat.completion`` or an error object."""
        if not isinstance(body, dict):
            raise ProtocolError("the server's JSON reply is not a chat completion object")
        if body.get("error") is not None or "choices" not in body:
            message = error_message(body)
            if message is None:
                raise ProtocolError("the server's JSON reply is not a chat completion object")
            self.error = StreamError(message, error_http_status(body))
            return
        self._keep_meta(body)
        if body.get("usage") and isinstance(body["usage"], dict):
            self.usage = body["usage"]
        choices = body.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict):
                continue
            index = choice_index(choice.get("index"))
            if index is None:
                continue
            state = self.choices.setdefault(index, ChoiceState(index))
            message = choice.get("message")
            if not isinstance(message, dict):
                message = {}
            self._add_text(state, message)
            if isinstance(message.get("tool_calls"), list):
                state.tool_calls = message["tool_calls"]
            state.finish_reason = choice.get("finish_reason")
        self.done = True

    def take_text(self) -> str:
        text = "".join(self.new_text)
        self.new_text.clear()
        return text

    def take_reasoning(self) -> str:
        text = "".join(self.new_reasoning)
        self.new_reasoning.clear()
        return text

    def outcome(self, transport_error: AssistersError | None = None) -> list[str]:
        """Apply the completion rules at the end of the stream.

        Returns warning lines for a complete answer; raises for an error or an
        incomplete one. ``transport_error`` is how the connection broke, if it did.
        """
        if self.error is not None:
            raise self.error
        finish = self.finish_reason
        complete = self.done or (finish is not None and finish != "error")
        if not complete:
            raise self._incomplete_error(transport_error)
        warnings = []
        if not self.done:
            warnings.append(
                f"warning: the stream ended without [DONE] after finish_reason '{one_line(str(finish), 80)}'"
                " (a trailing usage chunk may have been lost)"
            )
        if self.bad_payloads:
            excerpt = one_line(self.first_bad_payload)
            raise ProtocolError(
                f"{self.bad_payloads} event(s) in the stream were not JSON, first: {excerpt}"
            )
        if finish == "length":
            warnings.append("warning: the answer was cut off at the token limit (finish_reason 'length')")
        elif finish == "content_filter":
            warnings.append(
                "warning: the answer was stopped by a content filter (finish_reason 'content_filter')"
            )
        return warnings

    def _incomplete_error(self, transport_error: AssistersError | None) -> AssistersError:
        line = self.last_unknown_line
        if line is not None:
            # A proxy that forwards a backend's JSON error without SSE framing.
            payload = parse_json(line)
            message = error_message(payload)
            if message is not None:
                return StreamError(message, error_http_status(payload))
        if transport_error is not None:
            return IncompleteStream(
                f"the stream broke before the answer was complete: {transport_error.message}"
            )
        if self.events == 0 and line is None:
            return ProtocolError("the server's response held no events (empty body)")
        message = "the stream ended before the answer was complete (no finish_reason, no [DONE])"
        if line is not None:
            message += f"; last unrecognised line: {one_line(line)}"
        return IncompleteStream(message)

    def completion_object(self) -> dict[str, Any]:
        """The whole answer as one ``chat.completion`` object (for ``--json``).

        Values taken from the server as they came (usage, finish reasons, tool
        calls) are dropped to null if orjson cannot write them back."""
        choices = [
            {
                "index": state.index,
                "message": state.message(),
                "finish_reason": writable(state.finish_reason),
            }
            for _, state in sorted(self.choices.items())
        ]
        for choice in choices:
            if "tool_calls" in choice["message"]:
                choice["message"]["tool_calls"] = writable(choice["message"]["tool_calls"])
        return {
            "id": self.meta.get("id", ""),
            "object": "chat.completion",
            "created": self.meta.get("created", 0),
            "model": self.meta.get("model", ""),
            "choices": choices,
            "usage": writable(self.usage),
        }


def writable(value: Any) -> Any:
    """``value`` if orjson can write it, else None (JSON nested deeper than it allows)."""
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return None
    return value

