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
