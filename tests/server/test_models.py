"""The scripted models: echo tokens, and continuing a final assistant message.

Over real loopback sockets. Timing is only ever checked with a generous lower
bound, never an upper one, so a slow machine cannot make them flaky.
"""

from __future__ import annotations

import httpx
from hypothesis import given
from hypothesis import strategies as st

from assisters.server.app import ChatServer
from assisters.server.models import echo_tokens
from assisters.server.options import ServeOptions
from tests.server.helpers import (
    CONTINUE,
    PROMPT,
    answer,
    assert_openai_error,
    chunks,
    contents,
    post,
    resumed,
    stream_raw,
    user,
)


def test_echo_tokens_keep_whitespace() -> None:
    assert echo_tokens("hello big world") == ["hello", " big", " world"]
    assert echo_tokens("  a\n\nb  ") == ["  a", "\n\nb", "  "]
    assert echo_tokens("") == []


@given(st.text())
def test_echo_tokens_join_back(text: str) -> None:
    tokens = echo_tokens(text)
    assert "".join(tokens) == text
    assert all(len(t.split()) <= 1 for t in tokens)


def test_continue_echo_at_every_prefix_length(client: httpx.Client) -> None:
    tokens = echo_tokens(PROMPT)
    with ChatServer(ServeOptions()) as srv:
        for cut in range(len(PROMPT) + 1):
            body = resumed(PROMPT, PROMPT[:cut], stream_options={"include_usage": True})
            objs = chunks(stream_raw(client, srv, {**body, "stream": True}))
            sent = contents(objs)
            assert PROMPT[:cut] + "".join(sent) == PROMPT
            assert objs[-2]["choices"][0]["finish_reason"] == "stop"
            # Whole tokens after the prefix; the first one is the rest of a cut token.
            boundary = next(i for i in range(len(tokens) + 1) if len("".join(tokens[:i])) >= cut)
            whole = "".join(tokens[:boundary])
            expected = [whole[cut:]] if whole[cut:] else []
            assert sent == expected + tokens[boundary:]
            usage = objs[-1]["usage"]
            assert usage["completion_tokens"] == len(sent)
            assert usage["prompt_tokens"] == len(PROMPT.split()) + len(PROMPT[:cut].split())
            done = post(client, srv, body).json()
            assert done["choices"][0]["message"]["content"] == PROMPT[cut:]
            assert done["choices"][0]["finish_reason"] == "stop"
            assert done["usage"]["completion_tokens"] == len(sent)


def test_continue_lorem_gives_the_rest_of_the_same_answer(client: httpx.Client) -> None:
    with ChatServer(ServeOptions(tokens_per_second=0)) as srv:
        for limit in ({"max_tokens": 12}, {}):
            body = {"model": "lorem", "messages": user("hi"), "seed": 3, **limit}
            full, finish = answer(client, srv, body)
            assert finish == ("length" if limit else "stop")
            for cut in (0, 1, 5, 6, 7, len(full) // 2, len(full) - 1, len(full)):
                body["messages"] = [*user("hi"), {"role": "assistant", "content": full[:cut]}]
                assert answer(client, srv, {**body, **CONTINUE}) == (full[cut:], finish)
                # The model's text depends on the seed only, not on the prefix's words.
                body["messages"][-1]["content"] = "x" * cut
                assert answer(client, srv, body) == (full[cut:], finish)
        n2 = {"model": "lorem", "messages": user("hi"), "n": 2, "max_tokens": 6}
        objs = chunks(stream_raw(client, srv, {**n2, "stream": True}))
        firsts = ["".join(contents(objs, i)) for i in (0, 1)]
        n2["messages"] = [*user("hi"), {"role": "assistant", "content": "1234"}]
        objs = chunks(stream_raw(client, srv, {**n2, "stream": True}))
        assert ["".join(contents(objs, i)) for i in (0, 1)] == [t[4:] for t in firsts]


def test_continue_with_a_prefix_that_does_not_match(client: httpx.Client) -> None:
    """The prefix counts for its length only; one as long as the answer leaves nothing."""
    with ChatServer(ServeOptions()) as srv:
        assert answer(client, srv, resumed("one two three", "XYZ")) == (" two three", "stop")
        assert answer(client, srv, resumed("one two", "much longer than it")) == ("", "stop")
        assert answer(client, srv, resumed("one two", "one two")) == ("", "stop")
        limited = resumed("one two three", "one", max_tokens=2)
        assert answer(client, srv, limited) == (" two", "length")


def test_how_a_final_assistant_message_is_taken(client: httpx.Client) -> None:
    with ChatServer(ServeOptions()) as srv:
        llama_cpp = {"model": "echo", "messages": [*user("a b c"), {"role": "assistant", "content": "a"}]}
        assert answer(client, srv, llama_cpp) == (" b c", "stop")
        parts = [{"type": "text", "text": "a "}, {"type": "text", "text": "b"}]
        as_parts = {**llama_cpp, "messages": [*user("a b c"), {"role": "assistant", "content": parts}]}
        assert answer(client, srv, as_parts) == (" c", "stop")
        afresh = {**llama_cpp, "continue_final_message": False}
        assert answer(client, srv, afresh) == ("a b c", "stop")
        both = {**llama_cpp, "continue_final_message": True, "add_generation_prompt": True}
        assert_openai_error(post(client, srv, both), 400, "Cannot set both")
        assert_openai_error(
            post(client, srv, {**llama_cpp, "continue_final_message": "yes"}), 400, "boolean"
        )
        # Not the last message: an ordinary conversation, answered from the start.
        earlier = {"model": "echo", "messages": [{"role": "assistant", "content": "a"}, *user("a b")]}
        assert answer(client, srv, {**earlier, **CONTINUE}) == ("a b", "stop")


def test_echo_prefix_sends_the_prefix_again_first(client: httpx.Client) -> None:
    body = resumed(PROMPT, "naïve ca", stream_options={"include_usage": True})
    with ChatServer(ServeOptions(echo_prefix=True)) as srv:
        objs = chunks(stream_raw(client, srv, {**body, "stream": True}))
        done = post(client, srv, body).json()
        plain = post(client, srv, {"model": "echo", "messages": user("x y")}).json()
    assert contents(objs) == ["naïve", " ca", "fé", " 日本語", " text,", "  two", "  spaces", "\n"]
    assert objs[-1]["usage"]["completion_tokens"] == 6  # the repeated prefix is not generated
    assert done["choices"][0]["message"]["content"] == PROMPT
    assert done["usage"]["completion_tokens"] == 6
    assert plain["choices"][0]["message"]["content"] == "x y"  # nothing to continue
