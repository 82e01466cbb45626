"""Recognising a context-window overflow in the servers' own words."""

from __future__ import annotations

import pytest

from assisters.conversation import context
from assisters.errors import HTTPStatusError, StreamError

OPENAI = ("HTTP 400: This model's maximum context length is 8192 tokens. However, your messages "
          "resulted in 9000 tokens. Please reduce the length of the messages.")


@pytest.mark.parametrize("error", [
    HTTPStatusError(400, OPENAI),
    HTTPStatusError(400, "HTTP 400: the request exceeds the available context size, try increasing it"),
    HTTPStatusError(400, "HTTP 400: prompt is too long: 210000 tokens > 200000 maximum"),
    StreamError("Prompt contains 40000 tokens, too large for model with 32768 maximum context length", 400),
])
def test_overflow_in_each_servers_words(error):
    assert context.is_overflow(error)


@pytest.mark.parametrize("error", [
    HTTPStatusError(400, "HTTP 400: Unrecognized request argument supplied: foo"),
    HTTPStatusError(500, OPENAI),
    HTTPStatusError(401, "HTTP 401: invalid key"),
])
def test_other_errors_are_not_overflows(error):
    assert not context.is_overflow(error)


def test_the_line_has_the_servers_words_the_size_and_the_ways_out():
    error = HTTPStatusError(400, OPENAI)
    assert context.overflow_line(error, 812, interactive=True) == (
        f"the conversation is too long for the model's context window ({OPENAI}); "
        "try /undo, /reset, or --context drop-oldest")
    vague = HTTPStatusError(400, "HTTP 400: context length exceeded")
    assert context.overflow_line(vague, 812, interactive=False) == (
        "the conversation is too long for the model's context window (HTTP 400: context length exceeded; "
        "the last answered request was 812 prompt tokens); try a new conversation (no -c), "
        "or --context drop-oldest")


def test_the_first_cut_comes_from_the_servers_numbers():
    error = HTTPStatusError(400, OPENAI)  # 9000 of 8192: keep at most ~82 % of the characters
    assert context.first_cut(error, [100] * 10 + [10]) == 2
    assert context.first_cut(HTTPStatusError(400, "HTTP 400: context length exceeded"), [100, 10]) == 1
