"""Each injected fault, over a real socket: failures, drops, stalls, resets, slow answers.

Over real loopback sockets. Timing is only ever checked with a generous lower
bound, never an upper one, so a slow machine cannot make them flaky.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.server.helpers import (
    CONTINUE,
    PROMPT,
    RESUME_CASES,
    answer,
    assert_openai_error,
    chunks,
    contents,
    events,
    masked,
    post,
    printed,
    read_until_cut,
    resumed,
    stream_raw,
    timed_events,
    user,
)


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


def test_api_fail_status_hits_the_files_and_batches_api_only(client: httpx.Client) -> None:
    options = ServeOptions(api_fail_status=429, api_fail_times=2, retry_after=3)
    with ChatServer(options) as srv:
        for path in ("/files", "/batches"):
            r = client.get(f"{srv.base_url}{path}")
            error = assert_openai_error(r, 429, "Injected failure: HTTP 429")
            assert (error["code"], r.headers["retry-after"]) == ("rate_limit_exceeded", "3")
        assert post(client, srv, {"model": "echo", "messages": user("hi")}).status_code == 200
        assert client.get(f"{srv.base_url}/files").status_code == 200
        assert client.get(f"{srv.base_url}/batches").status_code == 200
        assert srv.state.api_requests_seen == 4 and srv.requests_seen == 1


def test_context_length_refuses_longer_prompts_as_openai_does(client: httpx.Client) -> None:
    with ChatServer(ServeOptions(context_length=5)) as srv:
        accepted = post(client, srv, {"model": "echo", "messages": user("one two three four five")})
        assert accepted.status_code == 200
        refused = post(client, srv, {"model": "echo", "stream": True,
                                     "messages": [{"role": "system", "content": "be brief"},
                                                  *user("one two three four")]})
        error = assert_openai_error(refused, 400, "maximum context length is 5 tokens. However, your "
                                                  "messages resulted in 6 tokens")
        assert error["code"] == "context_length_exceeded"
        assert error["param"] == "messages"


def test_context_length_must_be_positive() -> None:
    with pytest.raises(ValueError, match="context_length \\(--context-length\\) must be >= 1"):
        ServeOptions(context_length=0)
