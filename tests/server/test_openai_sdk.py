"""The official ``openai`` SDK as an independent client of the server.

Over real loopback sockets. Timing is only ever checked with a generous lower
bound, never an upper one, so a slow machine cannot make them flaky.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from assisters.server.app import ChatServer
from assisters.server.models import echo_tokens
from assisters.server.options import ServeOptions
from tests.server.helpers import TRICKY, user


def test_openai_sdk(tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")
    messages = [{"role": "user", "content": TRICKY}]
    with (
        ChatServer(ServeOptions()) as srv,
        openai.OpenAI(api_key="x", base_url=srv.base_url, max_retries=0) as sdk,
    ):
        stream = sdk.chat.completions.create(model="echo", messages=messages, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == TRICKY

        stream = sdk.chat.completions.create(
            model="echo", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        received = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == TRICKY
        assert received[-1].choices == []
        assert received[-1].usage.completion_tokens == len(echo_tokens(TRICKY))
        assert all(c.usage is None for c in received[:-1])

        done = sdk.chat.completions.create(model="echo", messages=messages)
        assert done.choices[0].message.content == TRICKY
        assert done.choices[0].finish_reason == "stop"
        assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens

        assert [m.id for m in sdk.models.list()] == ["echo", "lorem"]
        with pytest.raises(openai.NotFoundError, match="does not exist"):
            sdk.chat.completions.create(model="nope", messages=messages)


def test_openai_sdk_sees_injected_rate_limit() -> None:
    openai = pytest.importorskip("openai")
    with (
        ChatServer(ServeOptions(fail_status=429, retry_after=0)) as srv,
        openai.OpenAI(api_key="x", base_url=srv.base_url, max_retries=0) as sdk,
    ):
        with pytest.raises(openai.RateLimitError) as caught:
            sdk.chat.completions.create(model="echo", messages=user("hi"))
        assert caught.value.code == "rate_limit_exceeded"
        again = sdk.chat.completions.create(model="echo", messages=user("hi"))
        assert again.choices[0].message.content == "hi"
