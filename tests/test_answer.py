"""Answer: what the events of a chat completion stream mean."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assisters.answer import Answer, error_message, parse_json
from assisters.errors import (
    AssistersError,
    ExitStatus,
    IncompleteStream,
    ProtocolError,
    StreamError,
    TemporaryError,
)
from assisters.sse import Comment, Event, Field, SSEDecoder

USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
DONE = Event("message", "[DONE]")


def chunk(
    content: str | None = None, *, index: int = 0, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    delta: dict[str, Any] = {} if content is None else {"content": content}
    delta.update(extra.pop("delta", {}))
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1731000000,
        "model": "m",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }
    body.update(extra)
    return body


def ev(payload: Any, type: str = "message") -> Event:
    return Event(type, payload if isinstance(payload, str) else orjson.dumps(payload).decode())


@pytest.fixture(autouse=True, params=["apply", "apply_items", "read_events"])
def path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test that uses the helpers runs three times: items one by one
    through ``apply`` (as debug does); the data of single-line message events as
    bytes through ``apply_items`` (from ``SSEDecoder.feed_data``); and each item
    as SSE bytes, one network read each, through ``read_events`` (as chat does)."""
    global PATH
    PATH = request.param
    yield PATH
    PATH = "apply"
    DECODERS.clear()


PATH = "apply"


def as_data(item: Event | Field | Comment) -> bytes | Event | Field | Comment:
    """What ``SSEDecoder.feed_data`` hands over for this item."""
    if type(item) is Event and item.type == "message" and "\n" not in item.data:
        return item.data.encode()
    return item


def as_sse(item: Event | Field | Comment) -> bytes:
    if type(item) is Comment:
        return f":{item.text}\n".encode()
    if type(item) is Field:
        return f"{item.name}: {item.value}\n".encode()
    head = "" if item.type == "message" else f"event: {item.type}\n"  # type: ignore[union-attr]
    return (head + "".join(f"data: {line}\n" for line in item.data.split("\n")) + "\n").encode()  # type: ignore[union-attr]


DECODERS: dict[int, SSEDecoder] = {}


def feed_to(acc: Answer, items: list[Any]) -> None:
    if PATH == "apply":
        for item in items:
            acc.apply(item)
    elif PATH == "apply_items":
        acc.apply_items([as_data(item) for item in items])
    else:
        decoder = DECODERS.setdefault(id(acc), SSEDecoder())
        text = acc.read_events(decoder, b"".join(as_sse(item) for item in items))
        acc.new_text.append(text)  # given back, for the test to take


def accumulate(*items: Any) -> Answer:
    """An answer fed with Events (dicts are sent as data events)."""
    acc = Answer()
    for item in items:  # one read per item
        feed_to(acc, [item if isinstance(item, (Event, Field, Comment)) else ev(item)])
    return acc


def from_sse(body: bytes) -> Answer:
    acc = Answer()
    decoder = SSEDecoder(comments=True)
    if PATH == "apply":
        feed_to(acc, decoder.feed(body) + decoder.close())
    elif PATH == "apply_items":
        acc.apply_items(decoder.feed_data(body))
    else:
        acc.new_text.append(acc.read_events(decoder, body))
    return acc


def tool(index: int | None = None, id: str | None = None, name: str | None = None,
         args: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {}
    if index is not None:
        call["index"] = index
    if id is not None:
        call.update(id=id, type="function")
    fn = {}
    if name is not None:
        fn["name"] = name
    if args is not None:
        fn["arguments"] = args
    if fn:
        call["function"] = fn
    return call


def tools_chunk(*calls: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return chunk(index=index, delta={"tool_calls": list(calls)})


# -- choices and text ----------------------------------------------------------


def test_simple_stream_from_sse_bytes() -> None:
    body = (
        b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
        b": keep-alive\n\n"
        b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{"content":"lo \\u2028 \xf0\x9f\x98\x80"}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    acc = from_sse(body)
    assert acc.text == "Hello \u2028 😀"
    assert acc.take_text() == "Hello \u2028 😀"
    assert acc.take_text() == ""
    assert acc.finish_reason == "stop"
    assert acc.done and acc.stopped
    assert acc.outcome() == []


def test_choice_selected_by_index_not_position() -> None:
    acc = accumulate(
        chunk("", index=1, delta={"role": "assistant"}),
        chunk("Blue", index=1),
        chunk("Red", index=0),
        {"choices": [{"index": 1, "delta": {"content": " sky"}}, {"index": 0, "delta": {"content": " fox"}}]},
        chunk(index=1, finish="stop"),
        chunk(index=0, finish="length"),
        DONE,
    )
    assert acc.text == "Red fox"
    assert acc.take_text() == "Red fox"  # only choice 0 is streamed
    assert "".join(acc.choices[1].content) == "Blue sky"
    assert acc.finish_reason == "length"
    assert acc.choices[1].finish_reason == "stop"


def test_finish_of_choice_1_alone_is_not_complete() -> None:
    acc = accumulate(chunk("a", index=0), chunk("b", index=1, finish="stop"))
    with pytest.raises(IncompleteStream):
        acc.outcome()


def test_missing_index_means_choice_0() -> None:
    acc = accumulate({"choices": [{"delta": {"content": "x"}}]}, DONE)
    assert acc.text == "x"


@pytest.mark.parametrize(
    "payload",
    [
        {"id": "c", "choices": []},
        {"id": "c", "choices": None},
        {"id": "c"},
        {"choices": [{"index": 0, "delta": {}}]},
        {"choices": [{"index": 0}]},
        {"choices": [{"index": 0, "delta": None}]},
        {"choices": [{"index": 0, "delta": {"content": None}}]},
        {"choices": [{"index": 0, "delta": {"content": ""}}]},
        {"choices": [{"index": 0, "delta": {"content": None, "tool_calls": None, "role": None}}]},
        {"choices": [None, "junk"]},
    ],
)
def test_chunks_without_text_are_harmless(payload: dict[str, Any]) -> None:
    acc = accumulate(chunk("a"), payload, chunk("b"), chunk(finish="stop"), DONE)
    assert acc.text == "ab"
    assert acc.outcome() == []
    assert acc.error is None
    assert acc.bad_payloads == 0


def test_empty_data_event_is_skipped() -> None:
    body = b"data:\n\ndata: " + orjson.dumps(chunk("a", finish="stop")) + b"\n\ndata: [DONE]\n\n"
    acc = from_sse(body)
    assert acc.text == "a"
    assert acc.outcome() == []


def test_comments_and_unknown_fields_are_not_text() -> None:
    acc = accumulate(Comment(" ping"), Field("foo", "bar"), chunk("a"), chunk(finish="stop"), DONE)
    assert acc.text == "a"
    assert acc.outcome() == []


def test_apply_rejects_non_items() -> None:
    with pytest.raises(TypeError):
        Answer().apply("data: x")  # type: ignore[arg-type]


# -- usage ---------------------------------------------------------------------


def test_usage_is_the_last_non_null() -> None:
    first = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    acc = accumulate(
        chunk("a", usage=None),
        chunk("b", usage=first),
        chunk(finish="stop", usage=None),
        {"choices": [], "usage": USAGE},
        {"choices": [], "usage": None},
        {"choices": []},
        DONE,
    )
    assert acc.usage == USAGE
    assert acc.completion_object()["usage"] == USAGE


def test_no_usage_is_none() -> None:
    acc = accumulate(chunk("a", finish="stop"), DONE)
    assert acc.usage is None
    assert acc.completion_object()["usage"] is None


# -- [DONE] and completeness -----------------------------------------------------


def test_done_stops_and_later_items_are_ignored() -> None:
    acc = accumulate(chunk("a"), chunk(finish="stop"))
    assert not acc.stopped
    acc.apply(DONE)
    assert acc.stopped and acc.done
    for item in (ev(chunk("LATE")), Event("error", '{"message":"late"}'), Field("error", "late"),
                 ev("not json"), ev({"error": "late"})):
        acc.apply(item)
    assert acc.text == "a"
    assert acc.error is None
    assert acc.bad_payloads == 0
    assert acc.outcome() == []


def test_done_is_recognised_by_prefix_of_event_data() -> None:
    assert accumulate(chunk("a"), ev("[DONE] extra")).done
    assert not accumulate(ev(chunk("[DONE]"))).done  # [DONE] inside content is just text


def test_done_without_finish_reason_is_complete() -> None:
    acc = accumulate(chunk("a"), DONE)
    assert acc.outcome() == []


def test_finish_reason_without_done_warns() -> None:
    acc = accumulate(chunk("all"), chunk(finish="stop"))
    warnings = acc.outcome()
    assert len(warnings) == 1
    assert "warning" in warnings[0]
    assert "[DONE]" in warnings[0]


@pytest.mark.parametrize("finish", ["stop", "tool_calls", "end_turn"])
def test_any_non_error_finish_reason_completes(finish: str) -> None:
    acc = accumulate(chunk("a", finish=finish), DONE)
    assert acc.outcome() == []


def test_neither_done_nor_finish_is_incomplete_and_keeps_text() -> None:
    acc = accumulate(chunk("partial "), chunk("text"))
    with pytest.raises(IncompleteStream) as info:
        acc.outcome()
    assert isinstance(info.value, TemporaryError)
    assert info.value.status == ExitStatus.TEMPORARY
    assert acc.text == "partial text"
    assert "[DONE]" in info.value.message


def test_incomplete_names_the_transport_failure() -> None:
    acc = accumulate(chunk("partial"))
    with pytest.raises(IncompleteStream) as info:
        acc.outcome(IncompleteStream("connection reset by peer"))
    assert "connection reset by peer" in info.value.message
    assert info.value.status == ExitStatus.TEMPORARY


def test_transport_failure_after_finish_reason_is_still_complete() -> None:
    acc = accumulate(chunk("a", finish="stop"))
    warnings = acc.outcome(IncompleteStream("connection reset"))
    assert any("warning" in line for line in warnings)


def test_incomplete_with_unframed_json_error_line_uses_its_message() -> None:
    body = b'data: {"choices":[{"index":0,"delta":{"content":""}}]}\n\n'
    body += b'{"error":{"code":400,"message":"request exceeds the context size"}}\n'
    acc = from_sse(body)
    with pytest.raises(StreamError) as info:
        acc.outcome()
    assert info.value.message == "request exceeds the context size"
    assert info.value.status == ExitStatus.REJECTED


def test_incomplete_mentions_the_last_unrecognised_line() -> None:
    acc = accumulate(chunk("a"), Field("garbage", "here"))
    with pytest.raises(IncompleteStream) as info:
        acc.outcome()
    assert "garbage:here" in info.value.message


@pytest.mark.parametrize("body", [b"", b": only a comment\n\n", b"\n\n", b"event: ping\n\n"])
def test_stream_without_events_is_a_protocol_error(body: bytes) -> None:
    acc = from_sse(body)
    with pytest.raises(ProtocolError) as info:
        acc.outcome()
    assert info.value.status == ExitStatus.PROTOCOL == 76


def test_non_json_payload_is_a_protocol_error_even_when_complete() -> None:
    acc = accumulate(chunk("a"), ev("<html>oops</html>"), chunk("b", finish="stop"), DONE)
    assert acc.text == "ab"  # the text around it is kept
    with pytest.raises(ProtocolError) as info:
        acc.outcome()
    assert "<html>oops</html>" in info.value.message
    assert info.value.status == ExitStatus.PROTOCOL


@pytest.mark.parametrize("data", ["null", "[1, 2]", '"text"', "42", "{bad json"])
def test_non_object_json_is_a_bad_payload(data: str) -> None:
    acc = accumulate(chunk("a", finish="stop"), ev(data), DONE)
    with pytest.raises(ProtocolError):
        acc.outcome()


@pytest.mark.parametrize(
    ("finish", "word"), [("length", "token limit"), ("content_filter", "content filter")]
)
def test_cut_short_finish_reasons_warn(finish: str, word: str) -> None:
    acc = accumulate(chunk("a"), chunk(finish=finish), DONE)
    warnings = acc.outcome()
    assert len(warnings) == 1
    assert "warning" in warnings[0] and word in warnings[0]


def test_length_without_done_gives_both_warnings() -> None:
    warnings = accumulate(chunk("a", finish="length")).outcome()
    assert len(warnings) == 2
    assert all("warning" in line for line in warnings)


# -- errors ----------------------------------------------------------------------


def test_event_type_error_is_an_error_even_if_done_follows() -> None:
    acc = accumulate(chunk("Hi"), Event("error", '{"error":{"message":"overloaded"}}'), DONE,
                     chunk(finish="stop"))
    assert acc.stopped
    assert not acc.done
    with pytest.raises(StreamError) as info:
        acc.outcome()
    assert info.value.message == "overloaded"
    assert info.value.status == ExitStatus.SERVER
    assert acc.text == "Hi"


def test_event_error_with_plain_text_data() -> None:
    acc = accumulate(Event("error", "  upstream timed out \n"))
    with pytest.raises(StreamError, match=r"^upstream timed out$"):
        acc.outcome()


def test_event_error_without_data_has_a_message() -> None:
    acc = from_sse(b"event: error\ndata:\n\n")
    with pytest.raises(StreamError) as info:
        acc.outcome()
    assert info.value.message


def test_top_level_error_object_in_chunk() -> None:
    acc = accumulate(chunk("The"), {"error": {"message": "The server had an error", "type": "server_error"}},
                     DONE)
    with pytest.raises(StreamError) as info:
        acc.outcome()
    assert info.value.message == "The server had an error"
    assert info.value.status == ExitStatus.SERVER
    assert acc.text == "The"


def test_top_level_error_string_in_chunk() -> None:
    acc = accumulate(chunk("a"), {"error": "model crashed"}, DONE)
    with pytest.raises(StreamError, match="model crashed"):
        acc.outcome()


def test_error_null_is_not_an_error() -> None:
    acc = accumulate(chunk("a", error=None), chunk(finish="stop", error=None), DONE)
    assert acc.error is None
    assert acc.outcome() == []


def test_finish_reason_error_is_an_error_even_with_done() -> None:
    acc = accumulate(chunk("partial"), chunk(finish="error"), DONE)
    assert acc.stopped
    with pytest.raises(StreamError) as info:
        acc.outcome()
    assert "error" in info.value.message
    assert acc.text == "partial"


def test_openrouter_error_with_finish_reason_error_uses_its_message_and_code() -> None:
    acc = accumulate(
        chunk("Here is"),
        chunk("", finish="error", error={"code": 502, "message": "Network connection lost."}),
        DONE,
    )
    with pytest.raises(StreamError) as info:
        acc.outcome()
    assert info.value.message == "Network connection lost."
    assert info.value.status == ExitStatus.SERVER


def test_error_field_line_is_an_error_with_its_json_message() -> None:
    body = (
        b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}\n\n'
        b'error: {"code":400,"message":"the request exceeds the available context size",'
        b'"type":"invalid_request_error"}\n\n'
        b"data: [DONE]\n\n"
    )
    acc = from_sse(body)
    assert acc.error is not None
    assert not acc.done
    with pytest.raises(StreamError) as info:
        acc.outcome()
    assert info.value.message == "the request exceeds the available context size"
    assert info.value.status == ExitStatus.REJECTED  # llama.cpp's code 400


@pytest.mark.parametrize(
    ("code", "status"),
    [(400, ExitStatus.REJECTED), (401, ExitStatus.AUTH), (429, ExitStatus.TEMPORARY),
     (503, ExitStatus.SERVER)],
)
def test_error_code_inside_error_object_maps_to_exit_status(code: int, status: ExitStatus) -> None:
    acc = accumulate(Field("error", orjson.dumps({"code": code, "message": "m"}).decode()))
    with pytest.raises(StreamError) as info:
        acc.outcome()
    assert info.value.status == status
    acc = accumulate(chunk("a"), {"error": {"code": code, "message": "m"}})
    with pytest.raises(StreamError) as info:
        acc.outcome()
    assert info.value.status == status


def test_error_without_code_is_a_server_error() -> None:
    acc = accumulate(Field("error", "plain words"))
    with pytest.raises(StreamError) as info:
        acc.outcome()
    assert info.value.message == "plain words"
    assert info.value.status == ExitStatus.SERVER


def test_other_unknown_fields_are_not_errors() -> None:
    acc = accumulate(Field("Error", "x"), Field(" error", "y"), chunk("a", finish="stop"), DONE)
    assert acc.error is None
    assert acc.outcome() == []


def test_first_error_wins() -> None:
    acc = accumulate(Event("error", "first"), Event("error", "second"))
    with pytest.raises(StreamError, match="first"):
        acc.outcome()


# -- tool calls and reasoning ----------------------------------------------------


def test_parallel_tool_calls_assembled_by_index() -> None:
    acc = accumulate(
        chunk("Let me check."),
        tools_chunk(tool(0, "call_p1", "get_weather", "")),
        tools_chunk(tool(0, args='{"city":')),
        tools_chunk(tool(1, "call_t2", "get_weather", "")),
        tools_chunk(tool(1, args='{"city":')),
        tools_chunk(tool(0, args='"Paris"}')),
        tools_chunk(tool(1, args='"Tokyo"}')),
        chunk(finish="tool_calls"),
        DONE,
    )
    assert acc.outcome() == []
    assert acc.text == "Let me check."
    assert acc.choices[0].tool_calls == [
        {"id": "call_p1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "call_t2", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'}},
    ]


def test_tool_call_fragments_in_one_delta_list() -> None:
    acc = accumulate(tools_chunk(tool(1, "b", "g", "{"), tool(0, "a", "f", "["), tool(1, args="}"),
                                 tool(0, args="]")))
    calls = acc.choices[0].tool_calls
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("b", "g", "{}"),
        ("a", "f", "[]"),
    ]


def test_tool_call_name_fragments_are_joined() -> None:
    acc = accumulate(tools_chunk(tool(0, "a", "get_", "")), tools_chunk(tool(0, name="weather", args="{}")))
    assert acc.choices[0].tool_calls[0]["function"] == {"name": "get_weather", "arguments": "{}"}


def test_tool_call_without_index_continues_the_current_call() -> None:
    acc = accumulate(
        tools_chunk(tool(0, "a", "f", '{"x"')),
        tools_chunk(tool(1, "b", "g", '{"y"')),
        tools_chunk(tool(args=":2}")),  # continues index 1, the current call
        tools_chunk(tool(0, args=":1}")),
    )
    calls = acc.choices[0].tool_calls
    assert [c["function"]["arguments"] for c in calls] == ['{"x":1}', '{"y":2}']


def test_tool_call_without_any_index() -> None:
    acc = accumulate(tools_chunk(tool(id="a", name="f", args="{")), tools_chunk(tool(args="}")))
    assert acc.choices[0].tool_calls == [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]


def test_new_id_at_an_index_in_use_starts_a_new_call() -> None:
    acc = accumulate(
        tools_chunk(tool(0, "call_1", "f", "{}")),
        tools_chunk(tool(0, "call_2", "g", "{")),
        tools_chunk(tool(0, args="}")),  # goes to the newest call at index 0
    )
    calls = acc.choices[0].tool_calls
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("call_1", "f", "{}"),
        ("call_2", "g", "{}"),
    ]


def test_same_id_repeated_at_an_index_is_the_same_call() -> None:
    acc = accumulate(tools_chunk(tool(0, "call_1", "f", "{")), tools_chunk(tool(0, "call_1", args="}")))
    assert len(acc.choices[0].tool_calls) == 1
    assert acc.choices[0].tool_calls[0]["function"]["arguments"] == "{}"


def test_id_arriving_after_first_fragment_joins_that_call() -> None:
    acc = accumulate(tools_chunk(tool(0, name="f")), tools_chunk(tool(0, "late_id", args="{}")))
    assert acc.choices[0].tool_calls == [
        {"id": "late_id", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]


def test_tool_calls_are_per_choice() -> None:
    acc = accumulate(tools_chunk(tool(0, "a", "f", "{}"), index=0),
                     tools_chunk(tool(0, "b", "g", "[]"), index=1))
    assert [c["id"] for c in acc.choices[0].tool_calls] == ["a"]
    assert [c["id"] for c in acc.choices[1].tool_calls] == ["b"]


def test_tool_calls_without_index_but_with_new_ids_are_separate_calls() -> None:
    # Servers that omit "index" (seen in OpenAI-compatible Gemini endpoints) send whole calls.
    acc = accumulate(tools_chunk(tool(id="call_a", name="f", args='{"x":1}'),
                                 tool(id="call_b", name="g", args='{"y":2}')))
    calls = acc.choices[0].tool_calls
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("call_a", "f", '{"x":1}'),
        ("call_b", "g", '{"y":2}'),
    ]


def test_reasoning_content_and_reasoning_are_both_collected() -> None:
    acc = accumulate(
        chunk(delta={"reasoning_content": "Think"}),
        chunk(delta={"reasoning": "ing"}),
        chunk(delta={"reasoning_content": None, "reasoning": "."}),
        chunk("Answer", delta={"reasoning_content": None, "reasoning": None}),
        chunk(index=1, delta={"reasoning": "other choice"}),
        chunk(finish="stop"),
        DONE,
    )
    assert acc.take_reasoning() == "Thinking."
    assert acc.take_reasoning() == ""
    assert "".join(acc.choices[0].reasoning) == "Thinking."
    assert "".join(acc.choices[1].reasoning) == "other choice"
    assert acc.text == "Answer"  # reasoning never becomes text
    assert acc.take_text() == "Answer"


# -- non-streamed replies and the completion object ------------------------------


def test_apply_completion_object() -> None:
    body = {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1731000001,
        "model": "gpt",
        "choices": [
            {"index": 1, "message": {"role": "assistant", "content": "second"}, "finish_reason": "stop"},
            {
                "index": 0,
                "message": {"role": "assistant", "content": "first", "reasoning_content": "why",
                            "tool_calls": [{"id": "t", "type": "function",
                                            "function": {"name": "f", "arguments": "{}"}}]},
                "finish_reason": "tool_calls",
            },
        ],
        "usage": USAGE,
    }
    acc = Answer()
    acc.apply_completion(body)
    assert acc.done
    assert acc.text == "first"
    assert acc.take_text() == "first"
    assert acc.take_reasoning() == "why"
    assert acc.finish_reason == "tool_calls"
    assert acc.usage == USAGE
    assert acc.outcome() == []
    obj = acc.completion_object()
    assert obj["id"] == "chatcmpl-x" and obj["model"] == "gpt" and obj["created"] == 1731000001
    assert [c["index"] for c in obj["choices"]] == [0, 1]
    assert obj["choices"][0]["message"]["tool_calls"][0]["id"] == "t"
    assert obj["choices"][1]["message"] == {"role": "assistant", "content": "second"}


def test_apply_completion_with_length_warns() -> None:
    acc = Answer()
    acc.apply_completion({"choices": [{"index": 0, "message": {"content": "cut"},
                                       "finish_reason": "length"}]})
    assert any("token limit" in line for line in acc.outcome())


@pytest.mark.parametrize(
    ("body", "message", "status"),
    [
        ({"error": {"message": "model not found", "code": 404}}, "model not found", ExitStatus.REJECTED),
        ({"error": "quota exceeded"}, "quota exceeded", ExitStatus.SERVER),
        ({"detail": "Not authenticated"}, "Not authenticated", ExitStatus.SERVER),
        ({"error": {"message": "slow down"}, "status": 429}, "slow down", ExitStatus.TEMPORARY),
    ],
)
def test_apply_completion_error_object(body: dict[str, Any], message: str, status: ExitStatus) -> None:
    acc = Answer()
    acc.apply_completion(body)
    assert acc.stopped
    with pytest.raises(StreamError) as info:
        acc.outcome()
    assert info.value.message == message
    assert info.value.status == status


@pytest.mark.parametrize("body", [[1, 2], "text", None, {"object": "list", "data": []}])
def test_apply_completion_rejects_other_json(body: Any) -> None:
    with pytest.raises(ProtocolError):
        Answer().apply_completion(body)


def test_completion_object_shape_from_a_stream() -> None:
    acc = accumulate(
        chunk("", index=1, delta={"role": "assistant"}, system_fingerprint="fp"),
        chunk("B", index=1),
        chunk("A", index=0, delta={"reasoning_content": "r"}),
        tools_chunk(tool(0, "c1", "f", "{}"), index=0),
        chunk(index=1, finish="stop"),
        chunk(index=0, finish="tool_calls"),
        {"id": "chatcmpl-1", "choices": [], "usage": USAGE},
        DONE,
    )
    assert acc.completion_object() == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1731000000,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "A",
                    "reasoning_content": "r",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
                "finish_reason": "tool_calls",
            },
            {"index": 1, "message": {"role": "assistant", "content": "B"}, "finish_reason": "stop"},
        ],
        "usage": USAGE,
    }


def test_completion_object_without_content_has_null_content() -> None:
    acc = accumulate(tools_chunk(tool(0, "c", "f", "{}")), chunk(finish="tool_calls"), DONE)
    message = acc.completion_object()["choices"][0]["message"]
    assert message["content"] is None
    assert "reasoning_content" not in message


def test_completion_object_of_nothing() -> None:
    obj = Answer().completion_object()
    assert obj == {"id": "", "object": "chat.completion", "created": 0, "model": "", "choices": [],
                   "usage": None}


# -- error_message -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"error": {"message": "A"}, "message": "B", "detail": "C"}, "A"),
        ({"error": "S", "message": "B", "detail": "C"}, "S"),
        ({"error": {"message": ""}, "message": "B"}, "B"),
        ({"error": {"code": 500}, "message": "B"}, "B"),
        ({"error": "", "message": "B"}, "B"),
        ({"error": None, "message": "B", "detail": "C"}, "B"),
        ({"message": "", "detail": "C"}, "C"),
        ({"detail": [{"loc": ["body", "model"], "msg": "field required", "type": "missing"},
                     {"msg": "second"}]}, "field required"),
        ({"error": {"code": 500, "type": "server_error"}}, '{"code":500,"type":"server_error"}'),
        ({"message": 3, "detail": "C"}, "C"),
    ],
)
def test_error_message_precedence(payload: Any, expected: str) -> None:
    assert error_message(payload) == expected


@pytest.mark.parametrize("payload", [None, "error", [{"error": "x"}], {}, {"error": None}, {"detail": []},
                                     {"detail": [{"loc": 1}]}, {"detail": ["text"]}])
def test_error_message_none_when_nothing_usable(payload: Any) -> None:
    assert error_message(payload) is None


# -- the fast path: feed_data bytes, keep_text ------------------------------------


def test_apply_items_bytes_equal_events_for_a_typical_stream() -> None:
    events = [ev(chunk("", delta={"role": "assistant"}))]
    events += [ev(chunk(w)) for w in ["Hel", "lo", " \u2028 😀"]]
    events += [ev(chunk(finish="stop")), ev({"id": "c", "choices": [], "usage": USAGE}), DONE]
    one = Answer()
    for item in events:
        one.apply(item)
    two = Answer()
    for item in events:
        two.apply_items([item.data.encode()])
    assert two.text == one.text == "Hello \u2028 😀"
    assert two.take_text() == one.take_text()
    assert (two.finish_reason, two.usage, two.done) == (one.finish_reason, one.usage, one.done)
    assert two.meta == one.meta
    assert two.completion_object() == one.completion_object()


def test_apply_items_stops_at_done_within_a_read() -> None:
    acc = Answer()
    acc.apply_items([orjson.dumps(chunk("a")), b"[DONE]", orjson.dumps(chunk("LATE")), Field("error", "x")])
    assert acc.done and acc.text == "a" and acc.error is None
    acc.apply_items([orjson.dumps(chunk("later"))])
    assert acc.text == "a"


def test_apply_items_invalid_utf8_is_judged_as_replaced_text() -> None:
    acc = Answer()
    acc.apply_items([b'{"choices":[{"delta":{"content":"a\xffb"}}]}', b"\xff not json", b"", b"[DONE]"])
    assert acc.text == "a\ufffdb"
    assert acc.bad_payloads == 1 and acc.first_bad_payload == "\ufffd not json"
    assert acc.events == 4


@pytest.mark.parametrize(
    "extra",
    [{"usage": None}, {"error": None}, {"system_fingerprint": "fp"},
     {"choices": [{"delta": {"content": "x"}}]},
     {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None, "logprobs": None}]}],
)
def test_usual_chunk_variants_take_the_same_path_result(extra: dict[str, Any]) -> None:
    payloads = [chunk("a"), {**chunk("x"), **extra}, chunk(finish="stop")]
    one, two = Answer(), Answer()
    for payload in payloads:
        one.apply(ev(payload))
        two.apply_items([orjson.dumps(payload)])
    assert one.text == two.text == "ax"
    assert one.completion_object() == two.completion_object()


def test_usual_chunk_before_meta_or_choice_state_still_counts() -> None:
    acc = Answer()
    acc.apply_items([b'{"choices":[{"index":0,"delta":{"content":"a"}}]}'])  # no id: no meta
    acc.apply_items([orjson.dumps(chunk("b"))])
    acc.apply_items([orjson.dumps(chunk("c", finish="error"))])
    assert acc.text == "abc"
    assert acc.meta["id"] == "chatcmpl-1"
    assert isinstance(acc.error, StreamError)


def test_keep_text_false_keeps_no_text_but_delivers_it() -> None:
    acc = Answer(keep_text=False)
    for payload in [chunk("a"), chunk(delta={"reasoning_content": "r"}), chunk("b"),
                    tools_chunk(tool(0, "t", "f", "{}")), {"id": "c", "choices": [], "usage": USAGE},
                    chunk(finish="length")]:
        acc.apply_items([orjson.dumps(payload)])
    acc.apply(ev(chunk("c")))
    assert acc.take_text() == "abc"
    assert acc.take_reasoning() == "r"
    assert acc.choices[0].content == [] and acc.choices[0].reasoning == []
    assert acc.text == ""
    assert acc.usage == USAGE and acc.finish_reason == "length"
    assert acc.choices[0].tool_calls[0]["function"]["name"] == "f"


def test_apply_parsed_equals_apply() -> None:
    items = [ev(chunk("a")), ev("not json"), ev("null"), Event("message", ""), ev(chunk("b", finish="stop")),
             Event("error", '{"message":"boom"}'), DONE]
    one, two = Answer(), Answer()
    for item in items:
        one.apply(item)
        two.apply_parsed(item, parse_json(item.data))
    assert (one.text, one.bad_payloads, one.events, one.error and one.error.message) == (
        two.text, two.bad_payloads, two.events, two.error and two.error.message)


PIECES = [
    b"data: " + orjson.dumps(chunk("a")) + b"\n\n",
    b"data: " + orjson.dumps(chunk("\u00e9\u2028")) + b"\n\n",
    b"data: " + orjson.dumps(chunk("", delta={"role": "assistant"})) + b"\n\n",
    b"data: " + orjson.dumps(chunk("b", index=1)) + b"\n\n",
    b"data: " + orjson.dumps(chunk(delta={"reasoning_content": "r"})) + b"\n\n",
    b"data: " + orjson.dumps(chunk("c", usage=None)) + b"\n\n",
    b"data: " + orjson.dumps(chunk(finish="stop")) + b"\n\n",
    b"data: " + orjson.dumps(chunk("z", finish="length")) + b"\n\n",
    b"data: " + orjson.dumps(chunk("e", finish="error")) + b"\n\n",
    b"data: " + orjson.dumps(chunk("u", usage=USAGE)) + b"\n\n",
    b"data: " + orjson.dumps(chunk("t", error="boom")) + b"\n\n",
    b"data: " + orjson.dumps({"id": "x", "choices": [], "usage": USAGE}) + b"\n\n",
    b'data: {"choices":[{"delta":{"content":"no meta"}}]}\n\n',
    b'data: {"error":{"message":"boom","code":503}}\n\n',
    b"data: [DONE]\n\n", b"data: not json\n\n", b"data: \xff\n\n", b"data: 5\n\n", b"data:\n\n",
    b": ping\n\n", b"event: error\ndata: oops\n\n", b'data: {"choices":\ndata: []}\n\n', b"error: x\n",
    b"data: " + orjson.dumps(chunk("crlf")) + b"\r\n\r\n", b"\xef\xbb\xbf", b"id: 3\n",
]


def read_with_read_events(reads: list[bytes]) -> tuple[str, Any]:
    acc, decoder, shown = Answer(), SSEDecoder(), []
    for data in reads:
        shown.append(acc.read_events(decoder, data))
        if acc.stopped:
            break
    return "".join(shown), outcome_of(acc)


def read_with_apply_items(reads: list[bytes]) -> tuple[str, Any]:
    acc, decoder, shown = Answer(), SSEDecoder(), []
    for data in reads:
        acc.apply_items(decoder.feed_data(data))
        shown.append(acc.take_text())
        if acc.stopped:
            break
    return "".join(shown), outcome_of(acc)


def outcome_of(acc: Answer) -> Any:
    try:
        warnings = acc.outcome()
    except AssistersError as exc:
        return type(exc).__name__, exc.message, acc.events
    return warnings, acc.completion_object(), acc.take_reasoning(), acc.events


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=12), st.lists(st.integers(0, 2000), max_size=6))
def test_property_read_events_equals_apply_items(pieces: list[bytes], cuts: list[int]) -> None:
    body = b"".join(pieces)
    points = sorted({0, len(body), *(c % (len(body) + 1) for c in cuts)})
    by_piece = [piece for piece in pieces if piece]  # one read per event, as servers send them
    split_reads = [body[a:b] for a, b in itertools.pairwise(points)]
    for reads in (by_piece, split_reads):
        assert read_with_read_events(reads) == read_with_apply_items(reads)


def test_read_events_returns_text_left_by_earlier_applies_first() -> None:
    acc, decoder = Answer(), SSEDecoder()
    assert acc.read_events(decoder, b"data: " + orjson.dumps(chunk("a")) + b"\n\n") == "a"
    acc.apply(ev(chunk("b")))
    assert acc.read_events(decoder, b"data: " + orjson.dumps(chunk("c")) + b"\n\n") == "bc"
    assert acc.read_events(decoder, b"data: " + orjson.dumps(chunk("d")) + b"\n\n") == "d"
    assert acc.text == "abcd" and acc.new_text == []
