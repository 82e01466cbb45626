"""Fault scenarios: retries, timeouts and resuming, over real loopback sockets.

Each scenario runs the real CLI as a process and checks what a user sees: the
exact stdout bytes, the stderr lines, the exit status, and how many requests the
server received. Waits are bounded from below only (a retry that honoured
``Retry-After: 1`` came at least a second later); nothing asserts an upper
wall-clock bound.
"""

from __future__ import annotations

import email.utils
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from werkzeug import Request, Response

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.conftest import SECRET, chunk, cli_command, run_cli, sse, text_stream

EVENT_STREAM = "text/event-stream"
PROMPT = "one two three four five six"
ACCENTED = "naïve café 日本語 ünïcödé text ends"


def env_for(base_url: str, **extra: str) -> dict[str, str]:
    return {"ASSISTERS_BASE_URL": base_url, "ASSISTERS_API_KEY": SECRET, **extra}


def stderr_lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    text = result.stderr.decode()
    assert "Traceback" not in text and SECRET not in text
    assert SECRET.encode() not in result.stdout
    return text.splitlines()


@contextmanager
def chat_server(**options: Any) -> Iterator[ChatServer]:
    with ChatServer(ServeOptions(**options)) as server:
        yield server


class Script:
    """pytest-httpserver answering chat requests from a list of handlers, in order
    (the last one repeats), remembering when each request arrived and its body."""

    def __init__(self, httpserver: Any, *handlers: Callable[[Request], Response]) -> None:
        self.handlers = handlers
        self.times: list[float] = []
        self.wall_times: list[float] = []
        self.bodies: list[dict[str, Any]] = []
        httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_handler(self)

    def __call__(self, request: Request) -> Response:
        self.times.append(time.monotonic())
        self.wall_times.append(time.time())
        self.bodies.append(orjson.loads(request.get_data()))
        handler = self.handlers[min(len(self.times), len(self.handlers)) - 1]
        return handler(request)

    @property
    def count(self) -> int:
        return len(self.times)


def status(code: int, message: str = "busy", **headers: str) -> Callable[[Request], Response]:
    body = orjson.dumps({"error": {"message": message, "type": "x", "code": None}})
    return lambda request: Response(body, status=code, content_type="application/json", headers=headers)


def stream(body: bytes) -> Callable[[Request], Response]:
    return lambda request: Response(body, content_type=EVENT_STREAM)


OK = stream(text_stream("Hello", " world"))


# ------------------------------------------------------------------------ retries


def test_429_then_success_honours_retry_after(httpserver, base_url):
    script = Script(httpserver, status(429, "slow down", **{"Retry-After": "1"}), OK)
    result = run_cli("chat", "hi", env=env_for(base_url))
    assert (result.returncode, result.stdout) == (0, b"Hello world")
    assert stderr_lines(result) == [
        "assisters: HTTP 429: slow down (retry after 1 s); retrying in 1.0 s (attempt 2 of 3)"]
    assert script.count == 2
    assert script.times[1] - script.times[0] >= 1.0


def test_503_with_an_http_date_retry_after_then_success(httpserver, base_url):
    due = int(time.time()) + 3
    when = email.utils.formatdate(due, usegmt=True)
    script = Script(httpserver, status(503, "overloaded", **{"Retry-After": when}), OK)
    result = run_cli("chat", "hi", env=env_for(base_url))
    assert (result.returncode, result.stdout) == (0, b"Hello world")
    [line] = stderr_lines(result)
    assert line.startswith("assisters: HTTP 503: overloaded (retry after ")
    assert line.endswith(" (attempt 2 of 3)")
    assert script.count == 2
    assert script.wall_times[1] >= due


def test_retry_after_ms_is_preferred(httpserver, base_url):
    script = Script(httpserver, status(429, **{"retry-after-ms": "300", "Retry-After": "50"}), OK)
    result = run_cli("chat", "hi", env=env_for(base_url))
    assert (result.returncode, result.stdout) == (0, b"Hello world")
    assert "retrying in 0.3 s (attempt 2 of 3)" in stderr_lines(result)[0]
    assert script.count == 2


def test_persistent_500_gives_up_after_max_retries_plus_one_attempts(httpserver, base_url):
    script = Script(httpserver, status(500, "boom"))
    result = run_cli("chat", "--max-retries", "1", "hi", env=env_for(base_url))
    assert (result.returncode, result.stdout) == (69, b"")
    lines = stderr_lines(result)
    assert len(lines) == 2
    assert lines[0].startswith("assisters: HTTP 500: boom; retrying in ")
    assert lines[0].endswith(" s (attempt 2 of 2)")
    assert lines[1] == "assisters: error: HTTP 500: boom (gave up after 2 attempts)"
    assert script.count == 2


def test_default_is_two_retries(httpserver, base_url):
    script = Script(httpserver, status(502, "bad gateway"))
    result = run_cli("chat", "hi", env=env_for(base_url))
    assert result.returncode == 69
    assert len(stderr_lines(result)) == 3
    assert script.count == 3


@pytest.mark.parametrize(("code", "exit_status"), [(400, 65), (401, 77), (403, 77), (404, 65), (413, 65),
                                                   (422, 65)])
def test_client_errors_are_never_retried(httpserver, base_url, code, exit_status):
    script = Script(httpserver, status(code, "no", **{"Retry-After": "1"}))
    result = run_cli("chat", "hi", env=env_for(base_url))
    assert (result.returncode, result.stdout) == (exit_status, b"")
    assert stderr_lines(result) == [f"assisters: error: HTTP {code}: no (retry after 1 s)"]
    assert script.count == 1


@pytest.mark.parametrize("code", [408, 409, 429, 500, 502, 503, 504])
def test_each_retryable_status_is_retried(httpserver, base_url, code):
    script = Script(httpserver, status(code, "later", **{"retry-after-ms": "10"}), OK)
    result = run_cli("chat", "hi", env=env_for(base_url))
    assert (result.returncode, result.stdout) == (0, b"Hello world")
    assert script.count == 2


def test_retry_after_beyond_the_cap_ends_with_75_and_says_so(httpserver, base_url):
    script = Script(httpserver, status(503, "maintenance", **{"Retry-After": "3600"}))
    result = run_cli("chat", "hi", env=env_for(base_url))
    assert (result.returncode, result.stdout) == (75, b"")
    assert stderr_lines(result) == [
        "assisters: error: HTTP 503: maintenance (retry after 3600 s); the server asks to retry after "
        "3600 s, more than the 60 s limit (raise it with --max-retry-wait or ASSISTERS_MAX_RETRY_WAIT)"]
    assert script.count == 1


def test_total_wait_cap(httpserver, base_url):
    script = Script(httpserver, status(429, "later", **{"Retry-After": "2"}))
    result = run_cli("chat", "--max-total-wait", "3", "hi", env=env_for(base_url))
    assert result.returncode == 75
    lines = stderr_lines(result)
    assert len(lines) == 2
    assert "would pass the 3 s limit on all retry waits" in lines[1]
    assert script.count == 2


def test_quiet_silences_the_retry_lines_but_not_the_error(httpserver, base_url):
    script = Script(httpserver, status(500, "boom", **{"retry-after-ms": "10"}))
    result = run_cli("chat", "-q", "hi", env=env_for(base_url))
    assert result.returncode == 69
    assert stderr_lines(result) == [
        "assisters: error: HTTP 500: boom (retry after 0.01 s) (gave up after 3 attempts)"]
    assert script.count == 3


def test_max_retries_from_the_environment_and_the_config_file(httpserver, base_url, tmp_path):
    script = Script(httpserver, status(500, "boom", **{"retry-after-ms": "10"}))
    assert run_cli("chat", "hi", env=env_for(base_url, ASSISTERS_MAX_RETRIES="0")).returncode == 69
    assert script.count == 1
    config = tmp_path / "config.toml"
    config.write_text("max_retries = 1\n")
    assert run_cli("chat", "hi", env=env_for(base_url, ASSISTERS_CONFIG=str(config))).returncode == 69
    assert script.count == 3


def test_a_connect_error_is_retried():
    result = run_cli("chat", "--max-retries", "1", "--max-retry-wait", "1", "hi",
                     env=env_for("http://127.0.0.1:9/v1"))
    assert (result.returncode, result.stdout) == (75, b"")
    lines = stderr_lines(result)
    assert lines[0].startswith("assisters: cannot connect to http://127.0.0.1:9/v1/chat/completions: ")
    assert lines[0].endswith(" (attempt 2 of 2)")
    assert lines[1].startswith("assisters: error: cannot connect to http://127.0.0.1:9/v1/chat/completions: ")
    assert lines[1].endswith("(gave up after 2 attempts)")


def test_nothing_is_retried_once_text_is_shown(httpserver, base_url):
    body = sse(chunk(role="assistant"), chunk("partial"), done=False)  # no finish_reason: incomplete
    script = Script(httpserver, stream(body))
    result = run_cli("chat", "hi", env=env_for(base_url))
    assert (result.returncode, result.stdout) == (75, b"partial")
    assert len(stderr_lines(result)) == 1
    assert script.count == 1


def test_a_200_json_error_body_is_not_retried(httpserver, base_url):
    error = orjson.dumps({"error": {"message": "model exploded", "type": "server_error"}})
    script = Script(httpserver, lambda request: Response(error, content_type="application/json"))
    result = run_cli("chat", "hi", env=env_for(base_url))
    assert (result.returncode, result.stdout) == (69, b"")
    assert stderr_lines(result) == ["assisters: error: model exploded"]
    assert script.count == 1


def test_an_empty_200_body_is_a_protocol_error(httpserver, base_url):
    script = Script(httpserver, stream(b""))
    result = run_cli("chat", "hi", env=env_for(base_url))
    assert (result.returncode, result.stdout) == (76, b"")
    assert stderr_lines(result) == ["assisters: error: the server's response held no events (empty body)"]
    assert script.count == 1


def test_malformed_chunk_mid_stream_keeps_the_text_and_exits_76():
    with chat_server(malformed_at=2) as server:
        result = run_cli("chat", "-m", "echo", PROMPT, env=env_for(server.base_url))
    assert (result.returncode, result.stdout) == (76, b"one three four five six")
    [line] = stderr_lines(result)
    assert line.startswith("assisters: error: 1 event(s) in the stream were not JSON, first: ")
    assert server.requests_seen == 1


# ----------------------------------------------------------------------- timeouts


def test_connection_reset_mid_stream_keeps_the_text_and_exits_75():
    with chat_server(drop_after=2, reset=True) as server:
        result = run_cli("chat", "-m", "echo", PROMPT, env=env_for(server.base_url))
    assert (result.returncode, result.stdout) == (75, b"one two")
    [line] = stderr_lines(result)
    assert line.startswith("assisters: error: the stream broke before the answer was complete: ")
    assert server.requests_seen == 1


def test_stall_before_the_first_byte_names_the_first_byte_timeout():
    with chat_server(head_delay=5) as server:
        result = run_cli("chat", "-m", "echo", "--first-byte-timeout", "0.5", "--max-retries", "1",
                         "--max-retry-wait", "1", PROMPT, env=env_for(server.base_url))
    assert (result.returncode, result.stdout) == (75, b"")
    lines = stderr_lines(result)
    message = ("no response within the first-byte timeout (0.5 s); raise it with --first-byte-timeout "
               "or ASSISTERS_FIRST_BYTE_TIMEOUT")
    assert lines[0].startswith(f"assisters: {message}; retrying in ")
    assert lines[1] == f"assisters: error: {message} (gave up after 2 attempts)"
    assert server.requests_seen == 2


def test_stall_after_the_head_before_the_first_event_is_the_first_byte_timeout():
    with chat_server(first_token_delay_ms=5000) as server:
        result = run_cli("chat", "-m", "echo", "--first-byte-timeout", "0.5", "--max-retries", "0",
                         PROMPT, env=env_for(server.base_url))
    assert (result.returncode, result.stdout) == (75, b"")
    assert "first-byte timeout (0.5 s)" in stderr_lines(result)[0]


def test_stall_mid_stream_names_the_idle_timeout_and_keeps_the_text():
    with chat_server(stall_after=2, stall_seconds=5) as server:
        result = run_cli("chat", "-m", "echo", "--idle-timeout", "0.5", PROMPT, env=env_for(server.base_url))
    assert (result.returncode, result.stdout) == (75, b"one two")
    assert stderr_lines(result) == [
        "assisters: error: the stream broke before the answer was complete: nothing received for 0.5 s "
        "(idle timeout); raise it with --idle-timeout or ASSISTERS_IDLE_TIMEOUT"]
    assert server.requests_seen == 1


def test_first_byte_timeout_allows_a_long_think_that_the_idle_timeout_would_not():
    with chat_server(first_token_delay_ms=1200) as server:
        result = run_cli("chat", "-m", "echo", "--idle-timeout", "0.5", "--first-byte-timeout", "30", PROMPT,
                         env=env_for(server.base_url))
    assert (result.returncode, result.stdout) == (0, PROMPT.encode())


def test_total_timeout_is_named_and_not_retried():
    with chat_server(stall_after=1, stall_seconds=5) as server:
        result = run_cli("chat", "-m", "echo", "--total-timeout", "1", "--resume", PROMPT,
                         env=env_for(server.base_url))
    assert (result.returncode, result.stdout) == (75, b"one")
    [line] = stderr_lines(result)
    assert line.endswith("the run took longer than the total timeout (1 s); raise it with --total-timeout "
                         "or ASSISTERS_TOTAL_TIMEOUT")
    assert server.requests_seen == 1


def test_timeouts_from_the_environment(httpserver, base_url):
    with chat_server(stall_after=1, stall_seconds=5) as server:
        result = run_cli("chat", "-m", "echo", PROMPT,
                         env=env_for(server.base_url, ASSISTERS_IDLE_TIMEOUT="0.4"))
    assert result.returncode == 75
    assert "nothing received for 0.4 s (idle timeout)" in stderr_lines(result)[0]


def test_a_slow_drip_still_streams_without_a_timeout(httpserver, base_url):
    body = sse(chunk("drip"), chunk(finish="stop"))

    def drip(request: Request) -> Response:
        def bytes_one_by_one() -> Iterator[bytes]:
            for i in range(len(body)):
                time.sleep(0.05)
                yield body[i:i + 1]
        return Response(bytes_one_by_one(), content_type=EVENT_STREAM)

    script = Script(httpserver, drip)
    result = run_cli("chat", "--idle-timeout", "1", "--first-byte-timeout", "1", "hi", env=env_for(base_url))
    assert (result.returncode, result.stdout, result.stderr) == (0, b"drip", b"")
    assert script.count == 1


def test_drip_from_serve_is_byte_exact():
    with chat_server(drip_ms=1) as server:
        result = run_cli("chat", "-m", "echo", "--idle-timeout", "1", "héllo wörld",
                         env=env_for(server.base_url))
    assert (result.returncode, result.stdout, result.stderr) == (0, "héllo wörld".encode(), b"")


HEAD_TIMEOUT = ("no response head within the response-head timeout (0.5 s): the server accepted the "
                "request but did not answer; raise it with --response-head-timeout or "
                "ASSISTERS_RESPONSE_HEAD_TIMEOUT")


def test_a_server_that_never_sends_a_response_head_fails_on_the_head_timeout_and_is_retried():
    with chat_server(head_delay=30) as server:
        result = run_cli("chat", "-m", "echo", "--response-head-timeout", "0.5", "--max-retries", "1",
                         "--max-retry-wait", "0.1", PROMPT, env=env_for(server.base_url))
    assert (result.returncode, result.stdout) == (75, b"")
    lines = stderr_lines(result)
    assert lines[0].startswith(f"assisters: {HEAD_TIMEOUT}; retrying in ")
    assert lines[1] == f"assisters: error: {HEAD_TIMEOUT} (gave up after 2 attempts)"
    assert server.requests_seen == 2


@pytest.mark.parametrize("source", ["env", "config"])
def test_the_head_timeout_from_the_environment_and_the_config_file(source, tmp_path):
    env = {"ASSISTERS_RESPONSE_HEAD_TIMEOUT": "0.5"}
    if source == "config":
        config = tmp_path / "config.toml"
        config.write_text("response_head_timeout = 0.5\n")
        env = {"ASSISTERS_CONFIG": str(config)}
    with chat_server(head_delay=30) as server:
        result = run_cli("chat", "-m", "echo", "--max-retries", "0", PROMPT,
                         env=env_for(server.base_url, **env))
    assert result.returncode == 75
    assert stderr_lines(result) == [f"assisters: error: {HEAD_TIMEOUT}"]


def test_a_long_think_after_the_head_is_not_the_head_timeout():
    with chat_server(first_token_delay_ms=1500) as server:
        result = run_cli("chat", "-m", "echo", "--response-head-timeout", "0.5", PROMPT,
                         env=env_for(server.base_url))
    assert (result.returncode, result.stdout, result.stderr) == (0, PROMPT.encode(), b"")


def test_a_non_streamed_request_waits_for_its_head_as_for_the_first_byte():
    """Without streaming the head comes with the whole answer: only the first-byte timeout applies."""
    with chat_server(head_delay=1.5) as server:
        result = run_cli("chat", "--no-stream", "-m", "echo", "--response-head-timeout", "0.5", PROMPT,
                         env=env_for(server.base_url))
    assert (result.returncode, result.stdout, result.stderr) == (0, PROMPT.encode(), b"")


def test_the_total_timeout_also_ends_a_run_blocked_on_a_stdout_nobody_reads():
    """``chat --total-timeout 1 | sleep 60``: the answer is far bigger than the pipe, and the
    pipe is never read, so chat blocks writing; the total timeout still ends it."""
    with chat_server(tokens_per_second=0) as server:
        process = subprocess.Popen(
            cli_command("chat", "-m", "lorem", "--max-tokens", "200000", "--total-timeout", "1", "hi"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env_for(server.base_url)})
        assert process.stderr is not None and process.stdout is not None
        try:
            status = process.wait(timeout=30)  # before the fix: blocked until the pipe is read
        finally:
            process.kill()
            stderr = process.stderr.read()
            process.stdout.close()
            process.stderr.close()
    assert status == 75
    assert stderr.decode() == ("assisters: error: the run took longer than the total timeout (1 s); raise it "
                               "with --total-timeout or ASSISTERS_TOTAL_TIMEOUT\n")


# ----------------------------------------------------------------------- resuming


def uninterrupted(prompt: str) -> bytes:
    with chat_server() as server:
        result = run_cli("chat", "-m", "echo", prompt, env=env_for(server.base_url))
    assert result.returncode == 0
    return result.stdout


@pytest.mark.parametrize("drop_after", [1, 2, 3, 5])
def test_resume_after_a_drop_prints_the_uninterrupted_text(drop_after):
    with chat_server(drop_after=drop_after) as server:
        result = run_cli("chat", "-m", "echo", "--resume", ACCENTED, env=env_for(server.base_url))
    assert (result.returncode, result.stdout) == (0, uninterrupted(ACCENTED))
    [line] = stderr_lines(result)
    assert line.startswith("assisters: the stream broke before the answer was complete: ")
    assert line.endswith(" (resume 1 of 3)")
    assert server.requests_seen == 2


@pytest.mark.parametrize("drop_at_byte", [150, 230, 236, 240, 300, 333, 420])
def test_resume_after_a_cut_at_any_byte_even_inside_a_character(drop_at_byte):
    expected = uninterrupted(ACCENTED)
    with chat_server(drop_after_bytes=drop_at_byte) as server:
        result = run_cli("chat", "-m", "echo", "--resume", ACCENTED, env=env_for(server.base_url))
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
    assert server.requests_seen in (1, 2)  # a cut inside the role chunk leaves nothing shown: a retry


def test_resume_across_several_drops():
    with chat_server(drop_after=1, drop_times=3) as server:
        result = run_cli("chat", "-m", "echo", "--resume", ACCENTED, env=env_for(server.base_url))
    assert (result.returncode, result.stdout) == (0, uninterrupted(ACCENTED))
    lines = stderr_lines(result)
    assert [line[-16:] for line in lines] == [" (resume 1 of 3)", " (resume 2 of 3)", " (resume 3 of 3)"]
    assert server.requests_seen == 4


def test_resume_gives_up_after_max_resumes():
    with chat_server(drop_after=1, drop_times=0) as server:
        result = run_cli("chat", "-m", "echo", "--resume", "--max-resumes", "2", ACCENTED,
                         env=env_for(server.base_url))
    assert result.returncode == 75
    assert uninterrupted(ACCENTED).startswith(result.stdout) and result.stdout
    lines = stderr_lines(result)
    assert len(lines) == 3
    assert lines[2].startswith("assisters: error: ") and lines[2].endswith(" (after 2 resumes)")
    assert server.requests_seen == 3


def test_resume_skips_a_prefix_the_server_echoes_back():
    with chat_server(drop_after=2, echo_prefix=True) as server:
        result = run_cli("chat", "-m", "echo", "--resume", ACCENTED, env=env_for(server.base_url))
    assert (result.returncode, result.stdout) == (0, uninterrupted(ACCENTED))
    assert server.requests_seen == 2


def test_without_resume_a_drop_is_exit_75_with_the_partial_text():
    with chat_server(drop_after=2) as server:
        result = run_cli("chat", "-m", "echo", ACCENTED, env=env_for(server.base_url))
    assert (result.returncode, result.stdout) == (75, "naïve café".encode())
    assert server.requests_seen == 1


def test_resume_from_the_config_file(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("resume = true\n")
    with chat_server(drop_after=2) as server:
        result = run_cli("chat", "-m", "echo", ACCENTED,
                         env=env_for(server.base_url, ASSISTERS_CONFIG=str(config)))
    assert (result.returncode, result.stdout) == (0, uninterrupted(ACCENTED))


def test_the_resumed_request_and_summed_usage(httpserver, base_url, tmp_path):
    first = (b"data: " + orjson.dumps(chunk("Hello")) + b"\n\n"
             + b"data: " + orjson.dumps({**chunk(), "choices": [],
                                         "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                                   "total_tokens": 2}}) + b"\n\n")
    second = text_stream(" world", usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})
    script = Script(httpserver, stream(first), stream(second))
    config = tmp_path / "config.toml"
    config.write_text('resume_body = { continue_final_message = true, "x-extra" = 1 }\n')
    result = run_cli("chat", "--resume", "--json", "-q", "hi",
                     env=env_for(base_url, ASSISTERS_CONFIG=str(config)))
    assert (result.returncode, result.stderr) == (0, b"")
    completion = orjson.loads(result.stdout)
    assert completion["choices"][0]["message"]["content"] == "Hello world"
    assert completion["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert script.count == 2
    assert script.bodies[1]["messages"] == [*script.bodies[0]["messages"],
                                            {"role": "assistant", "content": "Hello"}]
    assert (script.bodies[1]["continue_final_message"], script.bodies[1]["x-extra"]) == (True, 1)
    assert "continue_final_message" not in script.bodies[0]


def test_usage_line_sums_the_attempts():
    with chat_server(drop_after=2) as server:
        result = run_cli("chat", "-m", "echo", "--resume", "-u", "-q", PROMPT, env=env_for(server.base_url))
    assert (result.returncode, result.stdout) == (0, PROMPT.encode())
    [line] = stderr_lines(result)
    assert line.startswith("usage: ")


# ------------------------------------------------------- leaving during a backoff


def _start_waiting(server: ChatServer) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(cli_command("chat", "-m", "echo", "hi"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, **env_for(server.base_url)})
    assert process.stderr is not None
    line = process.stderr.readline()
    assert b"retrying in 30.0 s" in line, line
    return process


def test_ctrl_c_during_a_backoff_ends_at_once_with_130():
    with chat_server(fail_status=503, fail_times=0, retry_after=30) as server:
        process = _start_waiting(server)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
    assert (process.returncode, stdout, stderr) == (130, b"", b"")
    assert server.requests_seen == 1


def test_closed_stdout_during_a_backoff_ends_at_once_quietly():
    with chat_server(fail_status=503, fail_times=0, retry_after=30) as server:
        process = _start_waiting(server)
        assert process.stdout is not None
        process.stdout.close()  # like `| head` finishing
        finished = threading.Event()
        threading.Timer(20, lambda: finished.is_set() or process.kill()).start()
        process.wait()
        finished.set()
        assert process.stderr is not None
        rest = process.stderr.read()
        process.stderr.close()
    assert (process.returncode, rest) == (141, b"")
    assert server.requests_seen == 1
