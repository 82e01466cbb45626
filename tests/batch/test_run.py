"""``assisters batch run`` as a user meets it: real processes against the local server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.batch.helpers import batch_run, by_id, content, output_lines, prompts_file
from tests.conftest import SECRET, find_key

MESSAGES = [{"role": "user", "content": "say this back"}]


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer(ServeOptions(tokens_per_second=0)) as srv:
        yield srv


def jsonl(path: Path, *lines: object) -> Path:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


def test_every_input_form_and_the_output_line_field_by_field(server, tmp_path: Path):
    source = jsonl(tmp_path / "in.jsonl",
                   {"custom_id": "openai", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "echo", "messages": [{"role": "user", "content": "first form"}]}},
                   {"custom_id": "together",
                    "body": {"model": "echo", "messages": [{"role": "user", "content": "second form"}]}},
                   {"model": "echo", "messages": [{"role": "user", "content": "bare body"}]})
    out = tmp_path / "out.jsonl"
    result = batch_run(server, str(source), "-o", str(out), "-q")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    lines = by_id(output_lines(out))
    assert set(lines) == {"openai", "together", "line-3"}
    line = lines["openai"]
    assert list(line) == ["id", "custom_id", "response", "error"]
    assert line["id"].startswith("batch_req_") and len(line["id"]) == len("batch_req_") + 24
    assert line["error"] is None
    response = line["response"]
    assert list(response) == ["status_code", "request_id", "body"]
    assert response["status_code"] == 200 and response["request_id"].startswith("req_")
    body = response["body"]
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "echo" and isinstance(body["created"], int)
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "first form"},
                                "finish_reason": "stop"}]
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    assert content(lines["together"]) == "second form" and content(lines["line-3"]) == "bare body"


def test_the_body_is_what_chat_json_prints(server, tmp_path: Path):
    from tests.conftest import run_cli

    chat = run_cli("chat", "--json", "--no-store", "-m", "echo", "the same answer",
                   env={"ASSISTERS_BASE_URL": server.base_url, "ASSISTERS_API_KEY": SECRET})
    out = tmp_path / "out.jsonl"
    batch_run(server, "--prompts", "-o", str(out), "-m", "echo", input=b"the same answer\n")
    expected = orjson.loads(chat.stdout)
    body = output_lines(out)[0]["response"]["body"]
    for changing in ("id", "created"):
        expected.pop(changing), body.pop(changing)
    assert body == expected


def test_prompts_from_stdin_with_the_chat_options_as_defaults(server, tmp_path: Path):
    out = tmp_path / "out.jsonl"
    source = jsonl(tmp_path / "in.jsonl", {"custom_id": "own", "body": {
        "model": "echo",
        "messages": [{"role": "system", "content": "mine"}, {"role": "user", "content": "a b c d"}],
        "max_tokens": 3}})
    result = batch_run(server, "--prompts", "-o", str(out), "-m", "echo", "--max-tokens", "2", "-s", "terse",
                       input=b"one two three\n\nfour five six\n")
    assert result.returncode == 0, result.stderr
    lines = by_id(output_lines(out))
    assert set(lines) == {"line-1", "line-3"}
    assert content(lines["line-1"]) == "one two"  # --max-tokens 2 filled in
    assert lines["line-1"]["response"]["body"]["choices"][0]["finish_reason"] == "length"
    mine = tmp_path / "mine.jsonl"
    batch_run(server, str(source), "-o", str(mine), "-m", "lorem", "--max-tokens", "1")
    assert content(output_lines(mine)[0]) == "a b c"  # the line's own model and max_tokens win


def test_the_server_receives_the_defaults_and_a_streamed_request_with_usage(tmp_path: Path):
    from pytest_httpserver import HTTPServer

    from tests.conftest import text_stream

    with HTTPServer() as httpserver:
        httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_data(
            text_stream("hi", usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}),
            content_type="text/event-stream")
        out = tmp_path / "out.jsonl"
        from tests.conftest import run_cli

        result = run_cli("batch", "run", "--prompts", "-o", str(out), "-m", "m1", "-t", "0.5", "--seed", "3",
                         "--stop", "END", "--option", "user", "u-1", "--option", "n", "1",
                         input=b"hello\n", env={"ASSISTERS_BASE_URL": httpserver.url_for("/v1"),
                                                 "ASSISTERS_API_KEY": SECRET})
        assert result.returncode == 0, result.stderr
        (request, _), = httpserver.log
        assert request.headers["Authorization"] == f"Bearer {SECRET}"
        assert orjson.loads(request.data) == {
            "model": "m1", "messages": [{"role": "user", "content": "hello"}], "temperature": 0.5, "seed": 3,
            "stop": ["END"], "user": "u-1", "n": 1, "stream": True, "stream_options": {"include_usage": True}}
    assert output_lines(out)[0]["response"]["body"]["usage"]["total_tokens"] == 2


def test_validation_errors_have_line_numbers_and_nothing_is_sent(server, tmp_path: Path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"messages": [{"role": "user", "content": "ok"}]}\n{oops\n'
                       b'{"custom_id": "x", "url": "/v1/embeddings", "body": {}}\n{"model": "echo"}\n')
    out = tmp_path / "out.jsonl"
    result = batch_run(server, str(source), "-o", str(out))
    assert result.returncode == 65
    assert result.stderr.decode().splitlines() == [
        f"{source}:2: not JSON: unexpected character, expected a string key: line 1 column 2 (char 1)",
        f"{source}:3: url '/v1/embeddings' is not supported; "
        "supported: /v1/chat/completions, /chat/completions",
        f"{source}:4: the body has no messages",
        f"assisters: error: {source}: 3 problems in the input; nothing was sent",
    ]
    assert server.requests_seen == 0 and not out.exists()
    stdin = batch_run(server, input=b'{"messages": "hi"}\n')
    assert stdin.returncode == 65
    assert stdin.stderr.decode().splitlines()[0] == (
        "<stdin>:1: messages must be a non-empty list of message objects")


def test_an_option_that_cannot_be_sent_is_a_usage_error_naming_option(server, tmp_path: Path):
    """The defaults go through chat's own checks: --option seed 1e400 is refused as in chat."""
    out = tmp_path / "out.jsonl"
    result = batch_run(server, "--prompts", "-o", str(out), "--option", "seed", "1e400", input=b"hi\n")
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "assisters batch run: error: Invalid value for '--option': seed '1e400': "
        "the number 1e400 is too large for a double (see 'assisters batch run --help')\n")
    assert server.requests_seen == 0 and not out.exists()


def test_dry_run_counts_and_estimates_and_sends_nothing(server, tmp_path: Path):
    source = prompts_file(tmp_path / "q.txt", 3)
    result = batch_run(server, "--prompts", "--dry-run", str(source))
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == b"3 requests, about 18 prompt tokens\n"
    out = tmp_path / "out.jsonl"
    batch_run(server, "--prompts", str(source), "-o", str(out), "-m", "echo", "-q")
    again = batch_run(server, "--prompts", "--dry-run", str(source), "-o", str(out))
    assert again.stdout == f"3 requests, about 18 prompt tokens; 3 already in {out}, 0 to send\n".encode()
    assert server.requests_seen == 3


def test_stdout_output_in_input_order_with_ordered(tmp_path: Path):
    with ChatServer(ServeOptions(tokens_per_second=0, fail_ratio=0.0)) as srv:
        source = prompts_file(tmp_path / "q.txt", 40)
        result = batch_run(srv, "--prompts", str(source), "-m", "echo", "-j", "8", "--ordered", "-q")
    assert result.returncode == 0 and result.stderr == b""
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [line["custom_id"] for line in lines] == [f"line-{i}" for i in range(1, 41)]
    assert [content(line) for line in lines] == [f"prompt {i}" for i in range(1, 41)]


def test_a_rerun_sends_only_what_is_missing_and_says_how_many_it_skips(server, tmp_path: Path):
    source = prompts_file(tmp_path / "q.txt", 5)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"".join(orjson.dumps({"id": "batch_req_x", "custom_id": f"line-{i}", "response": {
        "status_code": 200, "request_id": None, "body": {}}, "error": None}) + b"\n" for i in (2, 4)))
    result = batch_run(server, "--prompts", str(source), "-o", str(out), "-m", "echo")
    assert result.returncode == 0
    stderr = result.stderr.decode().splitlines()
    assert stderr[0] == f"batch: skipping 2 of 5 requests already in {out}"
    assert stderr[1].startswith(
        f"batch: 5 requests: 3 succeeded, 0 failed, 0 retried, 2 skipped (already in {out})")
    assert server.requests_seen == 3
    assert set(by_id(output_lines(out))) == {f"line-{i}" for i in range(1, 6)}


def test_failed_requests_get_error_lines_exit_3_and_retry_failed_replaces_them(tmp_path: Path):
    source = prompts_file(tmp_path / "q.txt", 30)
    out = tmp_path / "out.jsonl"
    summary = tmp_path / "summary.json"
    with ChatServer(ServeOptions(tokens_per_second=0, fail_ratio=0.3, fail_seed=1)) as srv:
        first = batch_run(srv, "--prompts", str(source), "-o", str(out), "-m", "echo", "--max-retries", "0",
                          "--summary-json", str(summary))
        failed = {cid for cid, line in by_id(output_lines(out)).items()
                  if line["response"]["status_code"] != 200}
        assert first.returncode == 3
        assert 0 < len(failed) < 30
        assert srv.state.limits.overloaded == len(failed)
        assert first.stderr.decode().splitlines()[-1] == (
            f"assisters: error: {len(failed)} of 30 requests failed; their lines in {out} hold the errors; "
            "--retry-failed sends them again")
        line = by_id(output_lines(out))[sorted(failed)[0]]
        assert line["error"] is None and line["response"]["status_code"] == 503
        assert line["response"]["body"]["error"]["code"] == "overloaded"
        data = orjson.loads(summary.read_bytes())
        assert data["failed"] == len(failed) and data["failed_by_class"] == {"http_503": len(failed)}
        assert data["exit_status"] == 3 and data["succeeded"] == 30 - len(failed)
        plain = batch_run(srv, "--prompts", str(source), "-o", str(out), "-m", "echo")
        assert plain.returncode == 0 and srv.requests_seen == 30  # failed lines are lines: nothing resent
        seen = srv.requests_seen
        second = batch_run(srv, "--prompts", str(source), "-o", str(out), "-m", "echo", "--retry-failed",
                           "--max-retries", "5")
        assert second.returncode == 0, second.stderr
        assert f"batch: sending {len(failed)} failed requests again (their lines are replaced)" in \
            second.stderr.decode()
        assert srv.requests_seen - seen >= len(failed)
    lines = by_id(output_lines(out))
    assert set(lines) == {f"line-{i}" for i in range(1, 31)}
    assert all(line["response"]["status_code"] == 200 for line in lines.values())


def test_503s_are_retried_with_backoff_and_counted(tmp_path: Path):
    source = prompts_file(tmp_path / "q.txt", 20)
    out = tmp_path / "out.jsonl"
    with ChatServer(ServeOptions(tokens_per_second=0, fail_ratio=0.3, fail_seed=2)) as srv:
        result = batch_run(srv, "--prompts", str(source), "-o", str(out), "-m", "echo", "--max-retries", "8",
                           "--max-retry-wait", "0.05")
        overloaded = srv.state.limits.overloaded
    assert result.returncode == 0, result.stderr
    assert overloaded > 0
    assert f" {overloaded} retried" in result.stderr.decode()
    assert len(by_id(output_lines(out))) == 20


def test_a_transport_failure_is_an_error_line_naming_its_class(tmp_path: Path):
    out = tmp_path / "out.jsonl"
    with ChatServer(ServeOptions(tokens_per_second=0, drop_after=1, drop_times=0)) as srv:
        result = batch_run(srv, "--prompts", "-o", str(out), "-m", "echo", "--max-retries", "1",
                           input=b"a b c\n")
        assert srv.requests_seen == 2  # a cut stream is retried: nothing was shown
    assert result.returncode == 3
    line = output_lines(out)[0]
    assert line["response"] is None
    assert line["error"]["code"] == "temporary"
    assert line["error"]["message"].startswith("the stream broke before the answer was complete")


def test_insufficient_quota_stops_keeps_what_is_done_and_exits_79(tmp_path: Path):
    source = prompts_file(tmp_path / "q.txt", 30)
    out = tmp_path / "out.jsonl"
    with ChatServer(ServeOptions(tokens_per_second=0, quota=10)) as srv:
        result = batch_run(srv, "--prompts", str(source), "-o", str(out), "-m", "echo", "-j", "2")
        refused = srv.state.limits.quota_refused
    assert result.returncode == 79
    assert 1 <= refused <= 2  # stopped at once: only requests already in flight got the answer
    assert len(by_id(output_lines(out))) == 10  # no line for the refused ones: a rerun sends them
    assert result.stderr.decode().splitlines()[-1].startswith(
        "assisters: error: stopped sending, the account is out of quota "
        "(HTTP 429: You exceeded your current quota")
    with ChatServer(ServeOptions(tokens_per_second=0)) as srv:
        rerun = batch_run(srv, "--prompts", str(source), "-o", str(out), "-m", "echo")
        assert rerun.returncode == 0 and srv.requests_seen == 20


def test_a_refused_key_stops_the_batch_at_once(tmp_path: Path):
    source = prompts_file(tmp_path / "q.txt", 50)
    out = tmp_path / "out.jsonl"
    with ChatServer(ServeOptions(tokens_per_second=0, fail_status=401, fail_times=0)) as srv:
        result = batch_run(srv, "--prompts", str(source), "-o", str(out), "-m", "echo", "-j", "4")
        assert srv.requests_seen <= 4
    assert result.returncode == 77
    assert out.read_bytes() == b""
    assert "stopped sending, the key is refused (HTTP 401" in result.stderr.decode()
    assert "50 not sent (a rerun sends them)" in result.stderr.decode()


@pytest.mark.parametrize("fault, option, message", [
    ({"head_delay": 30}, "--first-byte-timeout", "no response within the first-byte timeout (0.3 s)"),
    ({"first_token_delay_ms": 30000}, "--first-byte-timeout",
     "no response within the first-byte timeout (0.3 s)"),
    ({"stall_after": 1, "stall_seconds": 30}, "--idle-timeout", "nothing received for 0.3 s (idle timeout)"),
    ({"head_delay": 30}, "--total-timeout", "the run took longer than the total timeout (0.3 s)"),
    ({"stall_after": 1, "stall_seconds": 30}, "--total-timeout",
     "the run took longer than the total timeout"),
])
def test_every_timeout_holds_for_every_request_in_flight(tmp_path: Path, fault, option, message):
    out = tmp_path / "out.jsonl"
    with ChatServer(ServeOptions(tokens_per_second=0, **fault)) as srv:
        result = batch_run(srv, "--prompts", "-o", str(out), "-m", "echo", "-j", "3", option, "0.3",
                           "--max-retries", "0", input=b"a b\nc d\ne f\n")
    assert result.returncode == 3, result.stderr
    lines = output_lines(out)
    assert len(lines) == 3
    assert {line["error"]["code"] for line in lines} == {"temporary"}
    assert all(line["error"]["message"].startswith(message) for line in lines), lines


def test_the_key_never_reaches_output_summary_or_errors(tmp_path: Path):
    from pytest_httpserver import HTTPServer
    from werkzeug import Request, Response

    def quoting_the_key(request: Request) -> Response:
        key = request.headers["Authorization"].removeprefix("Bearer ")
        return Response(orjson.dumps({"error": {"message": f"invalid request for key {key}", "code": None}}),
                        status=400, content_type="application/json")

    with HTTPServer() as httpserver:
        httpserver.expect_request("/v1/chat/completions").respond_with_handler(quoting_the_key)
        out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
        from tests.conftest import run_cli

        result = run_cli("batch", "run", "--prompts", "-o", str(out), "--summary-json", str(summary),
                         input=b"hello\n", env={"ASSISTERS_BASE_URL": httpserver.url_for("/v1"),
                                                 "ASSISTERS_API_KEY": SECRET})
    assert result.returncode == 3
    for data in (out.read_bytes(), summary.read_bytes(), result.stdout, result.stderr):
        assert not find_key(data)
    assert b"invalid request for key [REDACTED]" in out.read_bytes()


def test_a_torn_last_line_is_repaired_and_its_request_sent_again(server, tmp_path: Path):
    source = prompts_file(tmp_path / "q.txt", 3)
    out = tmp_path / "out.jsonl"
    batch_run(server, "--prompts", str(source), "-o", str(out), "-m", "echo", "-j", "1", "--ordered")
    whole = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(whole[:2]) + whole[2][:25])  # as a kill in the middle of a write leaves it
    result = batch_run(server, "--prompts", str(source), "-o", str(out), "-m", "echo")
    assert result.returncode == 0
    assert result.stderr.decode().splitlines()[:2] == [
        f"batch: {out}: cut away a torn last line (a run was stopped while writing it); "
        "its request is sent again",
        f"batch: skipping 2 of 3 requests already in {out}",
    ]
    assert set(by_id(output_lines(out))) == {"line-1", "line-2", "line-3"}
    assert server.state.limits.sent["prompt 3"] == 2


def test_tool_calls_reasoning_and_finish_reason_are_assembled_from_the_stream(tmp_path: Path):
    from pytest_httpserver import HTTPServer

    from tests.conftest import chunk, run_cli, sse

    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "lookup", "arguments": '{"q":'}}
    more = {"index": 0, "function": {"arguments": '"x"}'}}
    stream = sse(chunk("", role="assistant"), chunk(reasoning_content="thinking "),
                 chunk(reasoning_content="hard"), chunk(tool_calls=[call]), chunk(tool_calls=[more]),
                 chunk(finish="tool_calls"),
                 {"id": "chatcmpl-test", "object": "chat.completion.chunk", "choices": [],
                  "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})
    with HTTPServer() as httpserver:
        httpserver.expect_request("/v1/chat/completions").respond_with_data(
            stream, content_type="text/event-stream", headers={"x-request-id": "req_abc"})
        out = tmp_path / "out.jsonl"
        result = run_cli("batch", "run", "--prompts", "-o", str(out), input=b"call a tool\n",
                         env={"ASSISTERS_BASE_URL": httpserver.url_for("/v1"), "ASSISTERS_API_KEY": SECRET})
    assert result.returncode == 0, result.stderr
    line = output_lines(out)[0]
    assert line["response"]["request_id"] == "req_abc"
    assert line["response"]["body"] == {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1731000000, "model": "test-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "reasoning_content": "thinking hard",
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "lookup", "arguments": '{"q":"x"}'}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}


def test_stdout_closed_early_ends_quietly_with_141(server, tmp_path: Path):
    import os
    import subprocess

    from tests.batch.helpers import env_for
    from tests.conftest import cli_command

    source = prompts_file(tmp_path / "q.txt", 200)
    run = subprocess.Popen(cli_command("batch", "run", "--prompts", str(source), "-m", "echo", "-j", "4"),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env={**os.environ, **env_for(server)})
    head = subprocess.Popen(["head", "-c", "300"], stdin=run.stdout, stdout=subprocess.PIPE)
    assert run.stdout is not None
    run.stdout.close()  # only head holds the pipe now, as in a shell
    first, _ = head.communicate(timeout=60)
    _, stderr = run.communicate(timeout=60)
    assert len(first) == 300
    assert (run.returncode, stderr) == (141, b"")


def test_connections_are_reused_across_requests(server, tmp_path: Path):
    source = prompts_file(tmp_path / "q.txt", 30)
    result = batch_run(server, "--prompts", str(source), "-o", str(tmp_path / "out.jsonl"), "-m", "echo",
                       "-j", "3")
    assert result.returncode == 0
    assert server.requests_seen == 30
    assert server.state.connections_opened <= 3  # the end of each body is read, so httpx keeps it


def test_the_connect_timeout_holds_per_request(tmp_path: Path):
    import contextlib
    import socket

    from tests.conftest import run_cli

    with socket.socket() as listener:  # a backlog that is full: connection attempts hang
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(4)]
        for filler in fillers:
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        try:
            result = run_cli("batch", "run", "--prompts", "--connect-timeout", "0.3", "--max-retries", "0",
                             input=b"a\nb\n", env={"ASSISTERS_BASE_URL": f"http://127.0.0.1:{port}/v1"})
        finally:
            for filler in fillers:
                filler.close()
    assert result.returncode == 3
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 2
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    expected = f"timed out connecting to {url} (connect timeout of 0.3 s)"
    assert all(line["error"]["message"].startswith(expected) for line in lines)
    assert result.stderr.decode().splitlines()[0] == (
        "batch: 2 requests: 0 succeeded, 2 failed (2 temporary), 0 retried, 0 skipped")
