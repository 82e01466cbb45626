"""Reading a batch input: the three line forms, defaults, problems with line numbers."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from assisters.batch.input import MAX_PROBLEMS, BatchInput, LineProblem, parse_line, with_defaults
from assisters.request import ChatOptions

MESSAGES = [{"role": "user", "content": "hi"}]
OPTIONS = ChatOptions(model="default-model", stream_usage=True)


def line(value: object) -> bytes:
    return orjson.dumps(value) + b"\n"


@pytest.mark.parametrize("raw, expected", [
    (line({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
           "body": {"messages": MESSAGES}}),
     ("a", {"messages": MESSAGES})),
    (line({"custom_id": "b", "body": {"messages": MESSAGES}}), ("b", {"messages": MESSAGES})),
    (line({"messages": MESSAGES, "model": "m"}), ("line-7", {"messages": MESSAGES, "model": "m"})),
    (b"\n", None),
    (b"   \r\n", None),
])
def test_the_json_line_forms(raw, expected):
    assert parse_line(raw, 7, prompts=False) == expected


def test_a_prompt_line_is_its_text_without_the_line_end():
    assert parse_line(b"Why is the sky blue?\r\n", 3, prompts=True) == (
        "line-3", {"messages": [{"role": "user", "content": "Why is the sky blue?"}]})
    assert parse_line(b"  \n", 4, prompts=True) is None
    as_text = parse_line(b'{"messages": []}\n', 5, prompts=True)
    assert as_text is not None and as_text[1]["messages"][0]["content"] == '{"messages": []}'


@pytest.mark.parametrize("raw, reason", [
    (b"{not json\n", "not JSON"),
    (b"[1, 2]\n", "a line must be a JSON object"),
    (line({"custom_id": "", "body": {"messages": MESSAGES}}), "custom_id must be a non-empty string"),
    (line({"custom_id": 5, "body": {"messages": MESSAGES}}), "custom_id must be a non-empty string"),
    (line({"custom_id": "a", "method": "GET", "body": {"messages": MESSAGES}}), "method must be POST"),
    (line({"custom_id": "a", "url": "/v1/embeddings", "body": {}}),
     "url '/v1/embeddings' is not supported; supported: /v1/chat/completions, /chat/completions"),
    (line({"custom_id": "a"}), "body must be a JSON object"),
    (line({"custom_id": "a", "body": {"model": "x"}}), "the body has no messages"),
    (line({"model": "x"}), "the body has no messages"),
    (line({"messages": []}), "messages must be a non-empty list"),
    (line({"messages": ["hi"]}), "messages must be a non-empty list"),
    (b"\xff\xfe\n", "not JSON"),
])
def test_problems(raw, reason):
    with pytest.raises(LineProblem, match=reason.replace("(", r"\(").replace("[", r"\[")):
        parse_line(raw, 1, prompts=False)


def test_options_fill_only_what_the_body_does_not_set():
    options = ChatOptions(model="m0", system="be brief", temperature=0.5, max_tokens=9, top_p=0.9,
                          stop=("END",), seed=4, extra={"user": "u1", "temperature": 2}, stream_usage=True)
    assert with_defaults({"messages": MESSAGES}, options) == {
        "model": "m0", "messages": [{"role": "system", "content": "be brief"}, *MESSAGES],
        "temperature": 0.5, "top_p": 0.9, "seed": 4, "max_tokens": 9, "stop": ["END"], "user": "u1",
        "stream": True, "stream_options": {"include_usage": True}}
    own = {"model": "mine", "messages": [{"role": "system", "content": "mine"}, *MESSAGES],
           "temperature": 0, "max_completion_tokens": 3, "stop": None, "user": "me", "stream": False}
    assert with_defaults(own, options) == {**own, "top_p": 0.9, "seed": 4}


def test_a_body_that_sets_stream_keeps_its_stream_options():
    body = {"messages": MESSAGES, "stream": True}
    assert "stream_options" not in with_defaults(body, OPTIONS)
    assert with_defaults({"messages": MESSAGES}, ChatOptions(model="m", stream=False))["stream"] is False
    no_usage = with_defaults({"messages": MESSAGES}, ChatOptions(model="m", stream_usage=False))
    assert no_usage["stream"] is True and "stream_options" not in no_usage


def test_check_lists_problems_with_line_numbers_up_to_the_cap(tmp_path: Path):
    good = line({"custom_id": "x", "body": {"messages": MESSAGES}})
    path = tmp_path / "in.jsonl"
    path.write_bytes(good + b"\n" + good + b"oops\n" * (MAX_PROBLEMS + 5))
    with BatchInput(str(path), io.BytesIO(), prompts=False, options=OPTIONS) as source:
        check = source.check()
    assert check.requests == 1
    assert check.problem_count == MAX_PROBLEMS + 6
    assert len(check.problems) == MAX_PROBLEMS
    assert check.problems[0] == f"{path}:3: custom_id 'x' is used again (first on line 1)"
    assert check.problems[1].startswith(f"{path}:4: not JSON: ")


def test_stdin_is_spooled_and_read_again_line_by_line():
    data = b"first\n\nsecond\n"
    with BatchInput(None, io.BytesIO(data), prompts=True, options=OPTIONS) as source:
        check = source.check()
        requests = list(source.requests())
        assert list(source.requests()) == requests
    assert (check.requests, check.custom_ids) == (2, {"line-1", "line-3"})
    assert [(r.custom_id, r.line, r.body["messages"][0]["content"]) for r in requests] == [
        ("line-1", 1, "first"), ("line-3", 3, "second")]
    assert requests[0].body["model"] == "default-model"


def test_the_prompt_token_estimate_is_about_four_characters_a_token():
    with BatchInput(None, io.BytesIO(b"x" * 400 + b"\n"), prompts=True, options=OPTIONS) as source:
        assert source.check().prompt_tokens == 104  # (400 + 16 for the message) / 4
