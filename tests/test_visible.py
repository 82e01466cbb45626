"""Server text on stderr shows its control characters; it never drives the terminal.

Every way server text reaches stderr is tried with the same hostile text (an OSC
title change, a colour, a bell, a C1 CSI, a bidirectional override): error lines
(HTTP bodies, in-stream errors, non-streamed errors), warnings, excerpts, debug's
summary, ``-v``'s response headers and reasoning on a terminal. stdout stays the
payload, byte for byte.
"""

from __future__ import annotations

import orjson

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from assisters.visible import one_line, visible
from tests.conftest import chunk, cli_command, run_cli, serve_stream, sse, text_stream
from tests.test_client import answering
from tests.test_signals import env_for, run_on_terminal

HOSTILE = "\x1b]0;owned\x07\x1b[31mred\x9b2J\u202eevil"
SHOWN = "\\x1b]0;owned\\x07\\x1b[31mred\\x9b2J\\u202eevil"
CONTROL_BYTES = (b"\x1b", b"\x07", b"\xc2\x9b", "\u202e".encode())


def assert_no_control_bytes(stderr: bytes) -> None:
    for byte in CONTROL_BYTES:
        assert byte not in stderr, stderr


def test_visible_escapes_controls_but_keeps_newlines_tabs_and_text():
    assert visible(HOSTILE) == SHOWN
    assert visible("line one\n\tline two, naïve 日本 😀") == "line one\n\tline two, naïve 日本 😀"
    assert visible("\x00\x7f\r") == "\\x00\\x7f\\x0d"
    assert visible(visible(HOSTILE)) == SHOWN  # idempotent: escaping twice changes nothing


def test_one_line_flattens_whitespace_then_escapes():
    assert one_line(f"a\n\nb\r\n{HOSTILE}") == f"a b {SHOWN}"


def test_an_http_error_body_is_shown_escaped(httpserver, key_env):
    body = orjson.dumps({"error": {"message": f"bad {HOSTILE}"}})
    serve_stream(httpserver, body, status=400, content_type="application/json")
    result = run_cli("chat", "hi", env=key_env)
    assert result.returncode == 65
    assert result.stderr.decode() == f"assisters: error: HTTP 400: bad {SHOWN}\n"


def test_an_in_stream_error_event_is_shown_escaped(httpserver, key_env):
    serve_stream(httpserver, sse(chunk("partial"), f"event: error\ndata: {HOSTILE}\n\n"))
    result = run_cli("chat", "hi", env=key_env)
    assert (result.returncode, result.stdout) == (69, b"partial")
    assert result.stderr.decode() == f"assisters: error: {SHOWN}\n"


def test_a_non_streamed_error_reply_is_shown_escaped(httpserver, key_env):
    body = orjson.dumps({"error": {"message": f"multi\nline {HOSTILE}"}})
    serve_stream(httpserver, body, content_type="application/json")
    result = run_cli("chat", "--no-stream", "hi", env=key_env)
    assert result.returncode == 69
    assert_no_control_bytes(result.stderr)
    assert SHOWN in result.stderr.decode()


def test_a_warning_quoting_the_server_is_shown_escaped(httpserver, key_env):
    serve_stream(httpserver, sse(chunk("ok"), chunk(finish=HOSTILE), done=False))
    result = run_cli("chat", "hi", env=key_env)
    assert (result.returncode, result.stdout) == (0, b"ok")
    assert result.stderr.decode() == (
        f"warning: the stream ended without [DONE] after finish_reason '{SHOWN}'"
        " (a trailing usage chunk may have been lost)\n")


def test_debug_summary_and_verbose_headers_are_shown_escaped():
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\nX-Note: "
            + HOSTILE.encode("latin-1", "replace") + b"\r\n\r\n")
    events = sse(chunk("hi"), chunk(finish=HOSTILE))
    with answering(head + events) as (base_url, _):
        result = run_cli("debug", "-v", "--base-url", base_url, "--api-key", "k", "hi")
    assert result.returncode == 0, result.stderr
    stderr = result.stderr.decode()
    assert_no_control_bytes(result.stderr)
    assert "< X-Note: \\x1b]0;owned\\x07\\x1b[31mred" in stderr
    assert f"finish_reason {SHOWN}" in stderr
    assert b'"finish_reason":"\\u001b]0;owned\\u0007' in result.stdout  # stdout: the payload, as JSON


def test_stdout_stays_byte_exact_even_with_escapes_in_the_answer(httpserver, key_env):
    serve_stream(httpserver, text_stream("colour: ", HOSTILE))
    result = run_cli("chat", "hi", env=key_env)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"colour: {HOSTILE}".encode(), b"")


def test_a_retry_notice_quoting_the_server_is_shown_escaped(httpserver, key_env):
    body = orjson.dumps({"error": {"message": HOSTILE}})
    httpserver.expect_ordered_request("/v1/chat/completions").respond_with_data(
        body, status=503, content_type="application/json", headers={"Retry-After": "0"})
    httpserver.expect_ordered_request("/v1/chat/completions").respond_with_data(
        text_stream("ok"), content_type="text/event-stream")
    result = run_cli("chat", "hi", env=key_env)
    assert (result.returncode, result.stdout) == (0, b"ok")
    assert result.stderr.decode() == (f"assisters: HTTP 503: {SHOWN} (retry after 0 s); retrying in 0.0 s "
                                      "(attempt 2 of 3)\n")


def test_reasoning_on_a_terminal_is_dimmed_and_escaped(tmp_path):
    stream = sse(chunk(role="assistant"), chunk(reasoning_content=f"thinking {HOSTILE}\n"), chunk("answer"),
                 chunk(finish="stop"))
    replay = tmp_path / "reasoning.sse"
    replay.write_bytes(stream)
    with ChatServer(ServeOptions(replay=replay)) as server:
        status, screen = run_on_terminal(cli_command("chat", "hi"), env_for(server))
    assert status == 0
    assert f"thinking {SHOWN}".encode() in screen
    assert b"\x1b]0;" not in screen and b"\x07" not in screen and b"\xc2\x9b" not in screen
    assert b"\x1b[2m" in screen  # our own dimming is still applied
    assert screen.endswith(b"answer\r\n")
