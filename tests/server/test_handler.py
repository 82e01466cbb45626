"""The local OpenAI-compatible server, over real loopback sockets.

These tests pin the behaviour the CLI and its other tests rely on: byte-exact echo,
the OpenAI chunk shapes, and each injected fault. Timing is only ever checked with a
generous lower bound, never an upper one, so a slow machine cannot make them flaky.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from assisters.server.app import ChatServer
from assisters.server.models import LOREM_DEFAULT_TOKENS, echo_tokens
from assisters.server.options import ServeOptions
from assisters.server.replay import split_events

KEY = "sk-server-test-KEY-never-logged"
TRICKY = "héllo  wörld\n\n\ttabs 🎉 emoji\u2028line-sep\r\nCRLF \u0085nel  trailing  "


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


def post(client: httpx.Client, srv: ChatServer, body: dict[str, Any]) -> httpx.Response:
    return client.post(f"{srv.base_url}/chat/completions", json=body)


def stream_raw(client: httpx.Client, srv: ChatServer, body: dict[str, Any]) -> bytes:
    """The whole streamed body; raises if the server cut it short."""
    with client.stream("POST", f"{srv.base_url}/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["transfer-encoding"] == "chunked"
        return r.read()


def events(raw: bytes) -> list[str]:
    """The data of each SSE event (compact JSON never holds a raw newline)."""
    pieces = raw.split(b"\n\n")
    assert pieces[-1] == b"", "body must end with a blank line"
    assert all(p.startswith(b"data: ") for p in pieces[:-1])
    return [p[len(b"data: ") :].decode() for p in pieces[:-1]]


def chunks(raw: bytes) -> list[dict[str, Any]]:
    data = events(raw)
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def contents(objs: list[dict[str, Any]], index: int = 0) -> list[str]:
    return [
        c["delta"]["content"]
        for o in objs
        for c in o["choices"]
        if c["index"] == index and "content" in c["delta"] and "role" not in c["delta"]
    ]


# ------------------------------------------------------------------------ basics


def test_echo_tokens_keep_whitespace() -> None:
    assert echo_tokens("hello big world") == ["hello", " big", " world"]
    assert echo_tokens("  a\n\nb  ") == ["  a", "\n\nb", "  "]
    assert echo_tokens("") == []


@given(st.text())
def test_echo_tokens_join_back(text: str) -> None:
    tokens = echo_tokens(text)
    assert "".join(tokens) == text
    assert all(len(t.split()) <= 1 for t in tokens)


def test_split_events_keeps_every_byte() -> None:
    raw = b"data: 1\n\ndata: 2\r\n\r\n: c\rdata: 3\r\rtail"
    assert split_events(raw) == [b"data: 1\n\n", b"data: 2\r\n\r\n", b": c\rdata: 3\r\r", b"tail"]


def test_models_with_and_without_prefix(client: httpx.Client) -> None:
    with ChatServer(ServeOptions()) as srv:
        for url in (f"{srv.base_url}/models", srv.base_url.removesuffix("/v1") + "/models"):
            r = client.get(url)
            assert r.status_code == 200
            body = r.json()
            assert body["object"] == "list"
            assert [m["id"] for m in body["data"]] == ["echo", "lorem"]
            assert all(
                m["object"] == "model" and m["owned_by"] == "assisters" for m in body["data"]
            )
        assert client.get(f"{srv.base_url}/models/lorem").json()["id"] == "lorem"
        assert client.get(f"{srv.base_url}/models/nope").status_code == 404


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


# ---------------------------------------------------------------------- errors


def assert_openai_error(r: httpx.Response, status: int, fragment: str) -> dict[str, Any]:
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert fragment in error["message"]
    return error


def test_request_errors(client: httpx.Client) -> None:
    url_of = "{}/chat/completions".format
    with ChatServer(ServeOptions()) as srv:
        error = assert_openai_error(
            post(client, srv, {"model": "x", "messages": user("hi")}),
            404,
            "The model `x` does not exist",
        )
        assert error["type"] == "invalid_request_error"
        bad_json = client.post(url_of(srv.base_url), content=b"{not json")
        error = assert_openai_error(bad_json, 400, "could not parse the JSON")
        assert error["type"] == "invalid_request_error"
        assert_openai_error(post(client, srv, {"model": "echo"}), 400, "messages")
        assert_openai_error(post(client, srv, {"model": "echo", "messages": []}), 400, "empty")
        assert_openai_error(
            post(client, srv, {"model": "echo", "messages": user("a"), "n": 9}), 400, "'n'"
        )
        assert_openai_error(client.get(f"{srv.base_url}/nowhere"), 404, "Invalid URL")
        assert_openai_error(client.get(url_of(srv.base_url)), 405, "POST")
        # The connection survived all of that (keep-alive with complete bodies).
        assert post(client, srv, {"model": "echo", "messages": user("fine")}).status_code == 200
        assert srv.requests_seen == 6  # every chat POST counts, valid or not


def test_chunked_request_body(client: httpx.Client) -> None:
    payload = orjson.dumps({"model": "echo", "messages": user("streamed  up")})

    def pieces() -> Iterator[bytes]:
        yield payload[:10]
        yield payload[10:]

    with ChatServer(ServeOptions()) as srv:
        r = client.post(f"{srv.base_url}/chat/completions", content=pieces())
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert r.json()["choices"][0]["message"]["content"] == "streamed  up"


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="tokens_per_second"):
        ServeOptions(tokens_per_second=-1)
    with pytest.raises(ValueError, match="malformed_at"):
        ServeOptions(malformed_at=0)
    with pytest.raises(FileNotFoundError):
        ChatServer(ServeOptions(replay=Path("/nonexistent/recording.sse")))


# ---------------------------------------------------------------------- faults


def test_fail_status_then_success(client: httpx.Client) -> None:
    options = ServeOptions(fail_status=503, fail_times=2, retry_after=1.5)
    body = {"model": "echo", "messages": user("hi")}
    with ChatServer(options) as srv:
        for i in (1, 2):
            r = post(client, srv, body)
            error = assert_openai_error(r, 503, f"Injected failure: HTTP 503 ({i} of 2)")
            assert error["type"] == "server_error"
            assert r.headers["retry-after"] == "1.5"
        r = post(client, srv, body)
        assert r.status_code == 200
        assert "retry-after" not in r.headers
        assert srv.requests_seen == 3


def test_fail_forever_with_rate_limit(client: httpx.Client) -> None:
    with ChatServer(ServeOptions(fail_status=429, fail_times=0, retry_after=2)) as srv:
        for _ in range(3):
            r = post(client, srv, {"model": "echo", "messages": user("hi"), "stream": True})
            error = assert_openai_error(r, 429, "Injected failure: HTTP 429")
            assert error["code"] == "rate_limit_exceeded"
            assert r.headers["retry-after"] == "2"


def test_drop_after_truncates_body(client: httpx.Client) -> None:
    body = {"model": "echo", "messages": user("a b c d e"), "stream": True}
    with ChatServer(ServeOptions(drop_after=2)) as srv:
        received = bytearray()
        with (
            pytest.raises(httpx.RemoteProtocolError),
            client.stream("POST", f"{srv.base_url}/chat/completions", json=body) as r,
        ):
            for piece in r.iter_bytes():
                received += piece
        objs = [json.loads(d) for d in events(bytes(received))]
        assert contents(objs) == ["a", " b"]
        assert all(c["finish_reason"] is None for o in objs for c in o["choices"])
        assert b"[DONE]" not in received
        assert srv.disconnects == 0  # a drop is the server's doing, not the client's
        # The server itself carries on: by default (drop_times=1) the next stream is whole.
        with httpx.Client(timeout=10) as fresh:
            assert "".join(contents(chunks(stream_raw(fresh, srv, body)))) == "a b c d e"


def test_malformed_at(client: httpx.Client) -> None:
    body = {"model": "echo", "messages": user("a b c"), "stream": True}
    with ChatServer(ServeOptions(malformed_at=2)) as srv:
        data = events(stream_raw(client, srv, body))
    # role chunk, "a", broken, " c", finish, [DONE]
    assert len(data) == 6
    assert data[2] == '{"choices": ['
    with pytest.raises(json.JSONDecodeError):
        json.loads(data[2])
    assert json.loads(data[1])["choices"][0]["delta"]["content"] == "a"
    assert json.loads(data[3])["choices"][0]["delta"]["content"] == " c"
    assert data[-1] == "[DONE]"


def timed_events(
    client: httpx.Client, srv: ChatServer, body: dict[str, Any]
) -> list[tuple[float, str]]:
    """Each event with the monotonic time it arrived, measured from the request start."""
    start = time.monotonic()
    out: list[tuple[float, str]] = []
    buffer = b""
    with client.stream("POST", f"{srv.base_url}/chat/completions", json=body) as r:
        for piece in r.iter_raw():
            buffer += piece
            *complete, buffer = buffer.split(b"\n\n")
            out += [(time.monotonic() - start, e.decode().removeprefix("data: ")) for e in complete]
    return out


def test_stall_after_pauses_between_tokens(client: httpx.Client) -> None:
    body = {"model": "echo", "messages": user("a b c"), "stream": True}
    with ChatServer(ServeOptions(stall_after=1, stall_seconds=0.3)) as srv:
        timed = timed_events(client, srv, body)
    data = [d for _, d in timed]
    assert "".join(contents([json.loads(d) for d in data[:-1]])) == "a b c"
    first_token, second_token = timed[1][0], timed[2][0]
    assert second_token - first_token >= 0.3 * 0.9
    assert data[-1] == "[DONE]"


def test_first_token_delay(client: httpx.Client) -> None:
    body = {"model": "echo", "messages": user("a b"), "stream": True}
    with ChatServer(ServeOptions(first_token_delay_ms=200)) as srv:
        timed = timed_events(client, srv, body)
        start = time.monotonic()
        r = post(client, srv, {"model": "echo", "messages": user("a b")})
        non_stream = time.monotonic() - start
    assert timed[0][0] >= 0.2 * 0.9
    assert [d for _, d in timed][-1] == "[DONE]"
    assert r.status_code == 200
    assert non_stream >= 0.2 * 0.9


def test_lorem_is_paced(client: httpx.Client) -> None:
    body = {"model": "lorem", "messages": user("hi"), "stream": True, "max_tokens": 3}
    with ChatServer(ServeOptions(tokens_per_second=20)) as srv:
        timed = timed_events(client, srv, body)
    token_times = [t for t, d in timed if '"content":"' in d and '"role"' not in d]
    assert len(token_times) == 3
    assert token_times[-1] >= 3 / 20 * 0.9


def test_client_disconnect_stops_generation(
    client: httpx.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    body = {"model": "lorem", "messages": user("hi"), "stream": True, "max_tokens": 10000}
    with ChatServer(ServeOptions(tokens_per_second=100)) as srv:
        with client.stream("POST", f"{srv.base_url}/chat/completions", json=body) as r:
            seen = b""
            for piece in r.iter_raw():
                seen += piece
                if seen.count(b'"content":"') >= 4:
                    break
        assert srv.active_streams == 1 or srv.disconnects == 1
        deadline = time.monotonic() + 5
        while (srv.disconnects, srv.active_streams) != (1, 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.disconnects == 1
        assert srv.active_streams == 0
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert err == ""


# ------------------------------------------------------------------ the rest


def test_replay_sends_file_bytes(client: httpx.Client, tmp_path: Path) -> None:
    recording = tmp_path / "rec.sse"
    raw = b'data: {"x":1}\n\n: comment\r\ndata: {"y":2}\r\n\r\ndata: [DONE]\n\n'
    recording.write_bytes(raw)
    with ChatServer(ServeOptions(replay=recording)) as srv:
        got = stream_raw(client, srv, {"anything": "goes"})
        again = stream_raw(client, srv, {"model": "echo", "messages": user("x")})
    assert got == again == raw


def test_logging_quiet_by_default_and_verbose_without_keys(
    client: httpx.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    body = {"model": "echo", "messages": user("hi")}
    with ChatServer(ServeOptions()) as srv:
        post(client, srv, body)
        client.get(f"{srv.base_url}/nowhere?api-key={KEY}")
    assert capfd.readouterr().err == ""
    with ChatServer(ServeOptions(verbose=True)) as srv:
        post(client, srv, body)
        client.get(f"{srv.base_url}/nowhere?api-key={KEY}")
    err = capfd.readouterr().err
    assert err.splitlines() == ["POST /v1/chat/completions 200", "GET /v1/nowhere 404"]
    assert KEY not in err


def test_shutdown_closes_the_socket() -> None:
    srv = ChatServer(ServeOptions())
    srv.start_background()
    port = srv.port
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    srv.shutdown()
    srv.shutdown()  # idempotent
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_shutdown_ends_a_stalled_stream() -> None:
    """shutdown() must not wait for a long stall or a lingering keep-alive connection."""
    body = {"model": "echo", "messages": user("a b"), "stream": True}
    with httpx.Client(timeout=10) as c:
        srv = ChatServer(ServeOptions(stall_after=1, stall_seconds=60))
        srv.start_background()
        with c.stream("POST", f"{srv.base_url}/chat/completions", json=body) as r:
            pieces = r.iter_raw()
            first = next(pieces)
            srv.shutdown()
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in pieces:
                    pass
    assert first.startswith(b"data: ")
    assert srv.disconnects == 0


# ------------------------------------------------------------------ openai SDK


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


# ------------------------------------------------------------------ continuation

CONTINUE = {"continue_final_message": True, "add_generation_prompt": False}
PROMPT = "naïve café 日本語 text,  two  spaces\n"


def resumed(text: str, prefix: str, **fields: Any) -> dict[str, Any]:
    """A request continuing ``prefix`` as the answer to ``text`` (the way vLLM is asked)."""
    messages = [*user(text), {"role": "assistant", "content": prefix}]
    return {"model": "echo", "messages": messages, **CONTINUE, **fields}


def answer(client: httpx.Client, srv: ChatServer, body: dict[str, Any]) -> tuple[str, str]:
    """The streamed text and finish_reason of one complete answer."""
    objs = chunks(stream_raw(client, srv, {**body, "stream": True}))
    finishes = [c["finish_reason"] for o in objs for c in o["choices"] if c["finish_reason"]]
    return "".join(contents(objs)), finishes[-1]


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


# ------------------------------------------------------------- drops and resumes


def read_until_cut(
    client: httpx.Client, srv: ChatServer, body: dict[str, Any]
) -> tuple[bytes, list[bytes], Exception | None]:
    """The body bytes that arrived, the pieces they came in, and the error that ended them."""
    pieces: list[bytes] = []
    try:
        with client.stream("POST", f"{srv.base_url}/chat/completions", json=body) as r:
            assert r.status_code == 200
            for piece in r.iter_raw():
                pieces.append(piece)
    except httpx.TransportError as exc:
        return b"".join(pieces), pieces, exc
    return b"".join(pieces), pieces, None


def printed(raw: bytes) -> str:
    """The text a client prints from a cut body: the content of its complete events."""
    complete = raw[: raw.rfind(b"\n\n") + 2] if b"\n\n" in raw else b""
    objs = [json.loads(e) for e in events(complete) if e != "[DONE]"]
    return "".join(contents(objs))


def masked(raw: bytes) -> bytes:
    """``raw`` with ids and created times (the only parts that differ) masked, lengths kept."""
    raw = re.sub(rb"chatcmpl-[0-9a-f]+", lambda m: b"#" * len(m[0]), raw)
    return re.sub(rb'(?<="created":)[0-9]+', lambda m: b"0" * len(m[0]), raw)


RESUME_CASES = [
    ("echo", {"drop_after": 0}),
    ("echo", {"drop_after": 1}),
    ("echo", {"drop_after": 3}),
    ("echo", {"drop_after": 7}),  # every token got through: only the end is missing
    ("lorem", {"drop_after": 5}),
    ("lorem", {"drop_after_bytes": 700}),
]


@pytest.mark.parametrize(("model", "drop"), RESUME_CASES)
def test_resume_after_a_drop_gives_the_uninterrupted_text(
    client: httpx.Client, model: str, drop: dict[str, int]
) -> None:
    body = {"model": model, "messages": user(PROMPT), "stream": True, "max_tokens": 20}
    with ChatServer(ServeOptions(tokens_per_second=0, **drop)) as srv:
        cut, _, error = read_until_cut(client, srv, body)
        assert isinstance(error, httpx.RemoteProtocolError)
        partial = printed(cut)
        messages = [*user(PROMPT), {"role": "assistant", "content": partial}]
        rest, _ = answer(client, srv, {**body, "messages": messages, **CONTINUE})
        full, _ = answer(client, srv, body)
    assert partial + rest == full
    assert srv.streams_seen == 3


def test_drop_after_bytes_cuts_inside_a_multibyte_character(client: httpx.Client) -> None:
    body = {"model": "echo", "messages": user(PROMPT), "stream": True}
    with ChatServer(ServeOptions()) as srv:
        whole = stream_raw(client, srv, body)
    inside = whole.index("日".encode()) + 1  # one byte of three
    for limit in (0, 5, inside, inside + 1, len(whole) - 1, len(whole)):
        with ChatServer(ServeOptions(drop_after_bytes=limit)) as srv:
            cut, _, error = read_until_cut(client, srv, body)
            assert isinstance(error, httpx.RemoteProtocolError)
            again = stream_raw(client, srv, body)  # drop_times=1: only the first is cut
            rest, _ = answer(client, srv, resumed(PROMPT, printed(cut)))
        assert len(cut) == limit
        assert masked(cut) == masked(again)[:limit]
        assert printed(cut) + rest == PROMPT
        if limit == inside:
            assert cut.endswith(b'"content":" \xe6')
            with pytest.raises(UnicodeDecodeError):
                cut.decode()
            assert printed(cut) == "naïve café"
    with ChatServer(ServeOptions(drop_after_bytes=len(whole) + 1)) as srv:
        assert masked(stream_raw(client, srv, body)) == masked(whole)  # too late to cut


def test_drop_times(client: httpx.Client) -> None:
    body = {"model": "echo", "messages": user("a b c"), "stream": True}
    with ChatServer(ServeOptions(drop_after=1, drop_times=2)) as srv:
        outcomes = [read_until_cut(client, srv, body)[2] is None for _ in range(3)]
        assert post(client, srv, {**body, "stream": False}).status_code == 200
        assert outcomes == [False, False, True]
        assert srv.streams_seen == 3  # the non-streaming request is not counted
    with ChatServer(ServeOptions(drop_after_bytes=10, drop_times=0)) as srv:
        assert all(read_until_cut(client, srv, body)[2] for _ in range(3))
    # Injected failures keep their own count; the first stream is the second request.
    options = ServeOptions(fail_status=503, drop_after=1)
    with ChatServer(options) as srv:
        assert post(client, srv, body).status_code == 503
        assert read_until_cut(client, srv, body)[2] is not None
        assert read_until_cut(client, srv, body)[2] is None
        assert (srv.requests_seen, srv.streams_seen) == (3, 2)


def test_reset_sends_an_rst(client: httpx.Client) -> None:
    body = {"model": "echo", "messages": user("a b c"), "stream": True}
    with ChatServer(ServeOptions(drop_after=1, reset=True)) as srv:
        _, _, error = read_until_cut(client, srv, body)
        assert isinstance(error, httpx.ReadError)
        assert answer(client, srv, body) == ("a b c", "stop")  # only the first is cut
        assert srv.disconnects == 0
    with ChatServer(ServeOptions(drop_after=1, reset=True)) as srv:
        payload = orjson.dumps(body)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
            raw.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
            )
            with pytest.raises(ConnectionResetError):
                while raw.recv(65536):
                    pass


# ----------------------------------------------------------------- slow answers


def test_head_delay_holds_the_response_head(client: httpx.Client) -> None:
    """--head-delay: nothing at all arrives for a while; --first-token-delay-ms: the head does."""
    body = {"model": "echo", "messages": user("a b"), "stream": True}
    url = "{}/chat/completions".format
    with httpx.Client(timeout=httpx.Timeout(10, read=0.05)) as impatient:
        with ChatServer(ServeOptions(head_delay=0.5)) as srv:
            with pytest.raises(httpx.ReadTimeout), impatient.stream("POST", url(srv.base_url), json=body):
                pass
            start = time.monotonic()
            assert answer(client, srv, body) == ("a b", "stop")
            assert time.monotonic() - start >= 0.5 * 0.9
            start = time.monotonic()
            assert post(client, srv, {**body, "stream": False}).status_code == 200
            assert time.monotonic() - start >= 0.5 * 0.9
        with (
            ChatServer(ServeOptions(first_token_delay_ms=500)) as srv,
            impatient.stream("POST", url(srv.base_url), json=body) as r,
        ):
            assert r.status_code == 200
            with pytest.raises(httpx.ReadTimeout):
                r.read()


def test_shutdown_wakes_a_head_delay() -> None:
    srv = ChatServer(ServeOptions(head_delay=600))
    srv.start_background()
    errors: list[Exception] = []

    def ask() -> None:
        with httpx.Client(timeout=60) as c:
            try:
                post(c, srv, {"model": "echo", "messages": user("a")})
            except httpx.TransportError as exc:
                errors.append(exc)

    thread = threading.Thread(target=ask)
    thread.start()
    deadline = time.monotonic() + 10
    while srv.requests_seen == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.shutdown()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(errors) == 1


def test_drip_sends_one_byte_per_chunk(client: httpx.Client, tmp_path: Path) -> None:
    recording = tmp_path / "rec.sse"
    raw = b'data: {"choices":[{"index":0,"delta":{"content":"h\xc3\xa9"}}]}\n\ndata: [DONE]\n\n'
    recording.write_bytes(raw)
    with ChatServer(ServeOptions(replay=recording, drip_ms=1)) as srv:
        body, pieces, error = read_until_cut(client, srv, {})
    assert error is None
    assert body == raw
    assert pieces == [raw[i : i + 1] for i in range(len(raw))]
    echo = {"model": "echo", "messages": user("é"), "stream": True}
    with ChatServer(ServeOptions()) as srv:
        plain = stream_raw(client, srv, echo)
    with ChatServer(ServeOptions(drip_ms=0, drop_after_bytes=100)) as srv:
        cut, pieces, error = read_until_cut(client, srv, echo)
        dripped, more, _ = read_until_cut(client, srv, echo)
    assert isinstance(error, httpx.RemoteProtocolError)
    assert len(pieces) == len(cut) == 100
    assert len(more) == len(dripped) == len(plain)
    assert masked(dripped) == masked(plain)
    assert masked(cut) == masked(plain)[:100]


def test_a_slow_drip_still_streams(client: httpx.Client) -> None:
    """At 50 ms a byte the answer takes minutes; its first bytes arrive at once."""
    body = {"model": "lorem", "messages": user("hi"), "stream": True}
    with ChatServer(ServeOptions(drip_ms=50)) as srv:
        with client.stream("POST", f"{srv.base_url}/chat/completions", json=body) as r:
            pieces = r.iter_raw()
            first = [next(pieces) for _ in range(3)]
        assert first == [b"d", b"a", b"t"]
        deadline = time.monotonic() + 5
        while srv.active_streams and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.active_streams == 0


def test_new_options_are_validated() -> None:
    for bad in ({"drop_after_bytes": -1}, {"drop_times": -1}, {"head_delay": -1},
                {"head_delay": float("nan")}, {"drip_ms": -1}, {"drip_ms": float("inf")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ServeOptions(**bad)
