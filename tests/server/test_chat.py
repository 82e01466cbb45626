"""``/v1/chat/completions``: the OpenAI chunk and completion shapes, usage, limits, choices.

Over real loopback sockets. Timing is only ever checked with a generous lower
bound, never an upper one, so a slow machine cannot make them flaky.
"""

from __future__ import annotations

import httpx

from assisters.server.app import ChatServer
from assisters.server.models import LOREM_DEFAULT_TOKENS, echo_tokens
from assisters.server.options import ServeOptions
from tests.server.helpers import TRICKY, chunks, contents, post, stream_raw, user


def test_echo_stream_is_byte_exact(client: httpx.Client) -> None:
    parts = [{"type": "text", "text": "ignored earlier turn"}]
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": parts},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": TRICKY},
    ]
    with ChatServer(ServeOptions()) as srv:
        objs = chunks(
            stream_raw(client, srv, {"model": "echo", "messages": messages, "stream": True})
        )
    assert objs[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(contents(objs)) == TRICKY
    assert contents(objs) == echo_tokens(TRICKY)
    last = objs[-1]
    assert last["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert all("usage" not in o for o in objs)
    assert len({o["id"] for o in objs}) == 1
    assert objs[0]["id"].startswith("chatcmpl-")
    assert all(o["object"] == "chat.completion.chunk" and o["model"] == "echo" for o in objs)


def test_echo_joins_text_parts(client: httpx.Client) -> None:
    content = [
        {"type": "text", "text": "one "},
        {"type": "image_url", "image_url": {"url": "data:,"}},
        {"type": "text", "text": "two"},
    ]
    with ChatServer(ServeOptions()) as srv:
        r = post(client, srv, {"model": "echo", "messages": [{"role": "user", "content": content}]})
    assert r.json()["choices"][0]["message"]["content"] == "one two"


def test_non_streaming_shape(client: httpx.Client) -> None:
    with ChatServer(ServeOptions()) as srv:
        r = post(client, srv, {"model": "echo", "messages": user(TRICKY)})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "echo"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": TRICKY},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    completion = len(echo_tokens(TRICKY))
    prompt = len(TRICKY.split())
    assert body["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def test_include_usage(client: httpx.Client) -> None:
    body = {
        "model": "echo",
        "messages": user("a b c"),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with ChatServer(ServeOptions()) as srv:
        objs = chunks(stream_raw(client, srv, body))
    *earlier, last = objs
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert all("usage" in o and o["usage"] is None for o in earlier)
    assert earlier[-1]["choices"][0]["finish_reason"] == "stop"


def test_max_tokens_gives_length(client: httpx.Client) -> None:
    with ChatServer(ServeOptions(tokens_per_second=0)) as srv:
        echo = {"model": "echo", "messages": user("one two three four"), "stream": True}
        objs = chunks(stream_raw(client, srv, {**echo, "max_tokens": 2}))
        assert contents(objs) == ["one", " two"]
        assert objs[-1]["choices"][0]["finish_reason"] == "length"
        exact = chunks(stream_raw(client, srv, {**echo, "max_tokens": 4}))
        assert exact[-1]["choices"][0]["finish_reason"] == "stop"
        lorem = {"model": "lorem", "messages": user("hi"), "stream": True}
        objs = chunks(stream_raw(client, srv, {**lorem, "max_completion_tokens": 7}))
        assert len(contents(objs)) == 7
        assert objs[-1]["choices"][0]["finish_reason"] == "length"
        r = post(client, srv, {"model": "lorem", "messages": user("hi"), "max_tokens": 5})
        assert r.json()["choices"][0]["finish_reason"] == "length"
        assert r.json()["usage"]["completion_tokens"] == 5


def test_lorem_default_length_and_determinism(client: httpx.Client) -> None:
    with ChatServer(ServeOptions(tokens_per_second=0)) as srv:
        body = {"model": "lorem", "messages": user("hi"), "stream": True, "seed": 7}
        first = chunks(stream_raw(client, srv, body))
        again = chunks(stream_raw(client, srv, body))
        other = chunks(stream_raw(client, srv, {**body, "seed": 8}))
    assert len(contents(first)) == LOREM_DEFAULT_TOKENS
    assert first[-1]["choices"][0]["finish_reason"] == "stop"
    assert contents(first) == contents(again)
    assert contents(first) != contents(other)
    assert "".join(contents(first))[0].isupper()


def test_n_choices_interleave(client: httpx.Client) -> None:
    with ChatServer(ServeOptions(tokens_per_second=0)) as srv:
        body = {"model": "echo", "messages": user("x y z"), "n": 2}
        objs = chunks(stream_raw(client, srv, {**body, "stream": True}))
        full = post(client, srv, body).json()
    indices = [o["choices"][0]["index"] for o in objs]
    assert indices == [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]  # roles, three tokens, finishes
    assert "".join(contents(objs, 0)) == "".join(contents(objs, 1)) == "x y z"
    assert [c["message"]["content"] for c in full["choices"]] == ["x y z", "x y z"]
    assert full["usage"]["completion_tokens"] == 6


# -- stop sequences ------------------------------------------------------------------------

STOP_CASES = [
    # (model, prompt or seed, stop, expected text) - the stop text itself is never sent
    ("echo", "hello big world again", ["big"], "hello "),
    ("echo", "hello big world again", "g w", "hello bi"),  # a string, spanning two tokens
    ("echo", "hello big world again", ["zzz", "again", "ld ag"], "hello big wor"),  # the first in the text
    ("echo", "hello big world again", ["hello"], ""),
    ("echo", "hello big world again", ["xyz", ""], "hello big world again"),  # no match, empty ignored
    ("echo", "naïve café 日本語", ["日本"], "naïve café "),
]


def _request(model: str, prompt: str, stop: object, **fields: object) -> dict[str, object]:
    return {"model": model, "messages": user(prompt), "stop": stop, **fields}


def _stream_answer(client: httpx.Client, srv: ChatServer, body: dict[str, object]) -> tuple[str, str]:
    objs = chunks(stream_raw(client, srv, {**body, "stream": True}))
    finishes = [c["finish_reason"] for o in objs for c in o["choices"] if c["finish_reason"]]
    return "".join(contents(objs)), finishes[-1]


def test_stop_sequences_end_echo_before_the_sequence_streamed_and_not(client: httpx.Client) -> None:
    with ChatServer(ServeOptions()) as srv:
        for model, prompt, stop, expected in STOP_CASES:
            body = _request(model, prompt, stop)
            finish = "stop"
            assert _stream_answer(client, srv, body) == (expected, finish), (prompt, stop)
            whole = post(client, srv, body).json()["choices"][0]
            assert (whole["message"]["content"], whole["finish_reason"]) == (expected, finish)


def test_stop_sequence_ends_lorem_and_beats_max_tokens(client: httpx.Client) -> None:
    with ChatServer(ServeOptions(tokens_per_second=0)) as srv:
        body = {"model": "lorem", "messages": user("x"), "max_tokens": 40}
        full, finish = _stream_answer(client, srv, body)
        assert finish == "length"
        word = full.split()[5]
        cut, finish = _stream_answer(client, srv, {"model": "lorem", "messages": user("x"), "max_tokens": 40,
                                                   "stop": [word]})
        assert (cut, finish) == (full[: full.index(word)], "stop")
        whole = post(client, srv, {"model": "lorem", "messages": user("x"), "max_tokens": 40, "stop": word})
        assert whole.json()["choices"][0]["message"]["content"] == cut


def test_a_stop_sequence_past_max_tokens_leaves_finish_length(client: httpx.Client) -> None:
    with ChatServer(ServeOptions()) as srv:
        body = _request("echo", "one two three four", ["four"], max_tokens=2)
        text, finish = _stream_answer(client, srv, body)
    assert (text, finish) == ("one two", "length")


def test_a_resumed_answer_stops_where_the_uninterrupted_one_does(client: httpx.Client) -> None:
    prompt = "alpha beta gamma delta epsilon"
    with ChatServer(ServeOptions()) as srv:
        body = {"model": "echo", "messages": [*user(prompt), {"role": "assistant", "content": "alpha be"}],
                "continue_final_message": True, "add_generation_prompt": False, "stop": ["delta"]}
        rest, finish = _stream_answer(client, srv, body)
    assert ("alpha be" + rest, finish) == ("alpha beta gamma ", "stop")


def test_stop_of_the_wrong_type_or_too_many_is_400(client: httpx.Client) -> None:
    with ChatServer(ServeOptions()) as srv:
        for stop, fragment in ((5, "Invalid type for 'stop'"), ([1], "Invalid type for 'stop'"),
                               (["a", "b", "c", "d", "e"], "array too long")):
            response = post(client, srv, _request("echo", "hi", stop))
            assert response.status_code == 400
            assert fragment in response.json()["error"]["message"]
            assert response.json()["error"]["param"] == "stop"
