"""`assisters chat` end to end: a real process against a real loopback server."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.conftest import SECRET, chunk, run_cli, serve_stream, sse, text_stream

EVENT_STREAM = "text/event-stream"
USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def received(httpserver: HTTPServer) -> list[dict[str, Any]]:
    return [orjson.loads(request.get_data()) for request, _ in httpserver.log]


def assert_no_secret(result: Any) -> None:
    assert SECRET.encode() not in result.stdout + result.stderr


def test_streams_text_byte_exact_with_empty_stderr(httpserver, key_env):
    serve_stream(httpserver, text_stream("Hel", "lo, ", "wörld 😀", "\n"))
    result = run_cli("chat", "hi", env=key_env)
    assert result.returncode == 0
    assert result.stdout == "Hello, wörld 😀\n".encode()
    assert result.stderr == b""
    request, _ = httpserver.log[0]
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.path == "/v1/chat/completions"
    assert received(httpserver) == [
        {"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    ]


def test_no_final_newline_added_in_a_pipe(httpserver, key_env):
    serve_stream(httpserver, text_stream("no newline"))
    result = run_cli("chat", "hi", env=key_env)
    assert result.stdout == b"no newline"


def test_every_request_option_reaches_the_server(httpserver, key_env):
    serve_stream(httpserver, text_stream("ok"))
    result = run_cli(
        "chat", "-m", "m1", "-s", "be brief", "-t", "0.5", "--max-tokens", "42", "--top-p", "0.9",
        "--stop", "END", "--stop", "\n\n", "--seed", "7",
        "-o", "n", "1", "-o", "user", "alice", "-o", "logit_bias", '{"50256": -100}',
        "-o", "presence_penalty", "0.1", "two", "words", env=key_env,
    )
    assert result.returncode == 0, result.stderr
    assert received(httpserver) == [{
        "model": "m1",
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": "two words"}],
        "temperature": 0.5, "max_tokens": 42, "top_p": 0.9, "seed": 7, "stop": ["END", "\n\n"],
        "stream": True,
        "n": 1, "user": "alice", "logit_bias": {"50256": -100}, "presence_penalty": 0.1,
    }]


def test_option_overrides_a_built_field(httpserver, key_env):
    serve_stream(httpserver, text_stream("ok"))
    run_cli("chat", "-o", "model", "from-option", "hi", env=key_env)
    assert received(httpserver)[0]["model"] == "from-option"


@pytest.mark.parametrize(
    ("stdin", "args", "prompt"),
    [
        (b"file text\n", ["summarise"], "file text\n\nsummarise"),
        (b"no newline", ["a", "b"], "no newline\n\na b"),
        (b"only stdin\n", [], "only stdin\n"),
        (b"", ["only", "args"], "only args"),
    ],
)
def test_prompt_from_stdin_and_arguments(httpserver, key_env, stdin, args, prompt):
    serve_stream(httpserver, text_stream("ok"))
    result = run_cli("chat", *args, input=stdin, env=key_env)
    assert result.returncode == 0, result.stderr
    assert received(httpserver)[0]["messages"] == [{"role": "user", "content": prompt}]


@pytest.mark.parametrize("stdin", [b"", b"  \n"])
def test_no_prompt_is_a_usage_error_and_sends_nothing(httpserver, key_env, stdin):
    result = run_cli("chat", input=stdin, env=key_env)
    assert result.returncode == 2
    assert b"no prompt" in result.stderr
    assert httpserver.log == []


def test_usage_flag_asks_for_usage_and_reports_it(httpserver, key_env):
    serve_stream(httpserver, text_stream("a", "b", usage=USAGE))
    result = run_cli("chat", "-u", "hi", env=key_env)
    assert result.returncode == 0
    assert result.stdout == b"ab"
    assert received(httpserver)[0]["stream_options"] == {"include_usage": True}
    line = result.stderr.decode()
    assert line.startswith("usage: 7 prompt + 3 completion = 10 tokens, first token ")
    assert "tokens/s" in line
    assert line.count("\n") == 1


def test_usage_flag_says_when_the_server_sent_none(httpserver, key_env):
    serve_stream(httpserver, text_stream("a"))
    result = run_cli("chat", "--usage", "hi", env=key_env)
    assert result.returncode == 0
    assert "usage: the server sent no usage" in result.stderr.decode()


def test_stream_usage_can_be_switched_off_and_on(httpserver, key_env):
    serve_stream(httpserver, text_stream("a"))
    run_cli("chat", "-u", "--no-stream-usage", "hi", env=key_env)
    run_cli("chat", "--stream-usage", "hi", env=key_env)
    run_cli("chat", "-u", "hi", env={**key_env, "ASSISTERS_STREAM_USAGE": "false"})
    bodies = received(httpserver)
    assert "stream_options" not in bodies[0]
    assert bodies[1]["stream_options"] == {"include_usage": True}
    assert "stream_options" not in bodies[2]


def test_no_stream_sends_a_batch_request_and_prints_the_content(httpserver, key_env):
    completion = {
        "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole answer"},
                     "finish_reason": "stop"}],
        "usage": USAGE,
    }
    httpserver.expect_request("/v1/chat/completions").respond_with_json(completion)
    result = run_cli("chat", "--no-stream", "hi", env=key_env)
    assert result.returncode == 0
    assert result.stdout == b"whole answer"
    assert result.stderr == b""
    body = received(httpserver)[0]
    assert "stream" not in body and "stream_options" not in body
    as_json = run_cli("chat", "--no-stream", "--json", "hi", env=key_env)
    output = orjson.loads(as_json.stdout)
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", output.pop("conversation"))  # where it is stored
    assert output == {**completion, "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "whole answer"},
         "finish_reason": "stop"}]}


def test_json_assembles_one_completion_from_the_chunks(httpserver, key_env):
    body = sse(
        chunk("", role="assistant"),
        chunk(reasoning_content="thinking"),
        chunk("Hi"),
        chunk(tool_calls=[{"index": 0, "id": "call_1", "type": "function",
                           "function": {"name": "f", "arguments": '{"a"'}}]),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": ": 1}"}}]),
        chunk(finish="tool_calls"),
        {"id": "chatcmpl-test", "choices": [], "usage": USAGE},
    )
    serve_stream(httpserver, body)
    result = run_cli("chat", "--json", "hi", env=key_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(b"}\n") and result.stdout.count(b"\n") == 1
    output = orjson.loads(result.stdout)
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", output.pop("conversation"))  # where it is stored
    assert output == {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1731000000,
        "model": "test-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Hi", "reasoning_content": "thinking",
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "f", "arguments": '{"a": 1}'}}]}}],
        "usage": USAGE,
    }
    assert received(httpserver)[0]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("status", "exit_status"),
    [(400, 65), (404, 65), (413, 65), (422, 65), (401, 77), (403, 77), (408, 75), (429, 75),
     (500, 69), (502, 69), (503, 69), (302, 76)],
)
def test_http_status_maps_to_the_documented_exit_status(httpserver, key_env, status, exit_status):
    error = {"error": {"message": f"server says {status}", "type": "x", "code": None}}
    serve_stream(httpserver, orjson.dumps(error), status=status, content_type="application/json")
    result = run_cli("chat", "--max-retries", "0", "hi", env=key_env)
    assert result.returncode == exit_status
    assert result.stdout == b""
    assert result.stderr.decode() == f"assisters: error: HTTP {status}: server says {status}\n"
    assert_no_secret(result)


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        (b'{"error": "model not found, try pulling it first"}', "model not found, try pulling"),
        (b'{"message": "plain message"}', "plain message"),
        (b'{"detail": "detail text"}', "detail text"),
        (b'{"detail": [{"loc": ["body"], "msg": "field required"}]}', "field required"),
        (b"<html>\n<body>Bad gateway</body>\n</html>", "HTTP 502 BAD GATEWAY: Bad gateway"),  # text, no tags
    ],
)
def test_error_message_is_the_servers_own(httpserver, key_env, body, shown):
    serve_stream(httpserver, body, status=502, content_type="text/html")
    result = run_cli("chat", "--max-retries", "0", "hi", env=key_env)
    assert result.returncode == 69
    assert shown in result.stderr.decode()
    assert result.stderr.count(b"\n") == 1


def test_retry_after_is_mentioned(httpserver, key_env):
    serve_stream(httpserver, b'{"error": {"message": "slow down"}}', status=429,
                 content_type="application/json", **{"Retry-After": "3"})
    result = run_cli("chat", "--max-retries", "0", "hi", env=key_env)
    assert result.returncode == 75
    assert "slow down (retry after 3 s)" in result.stderr.decode()


def test_missing_key_is_a_config_error_and_sends_nothing(httpserver):
    result = run_cli("chat", "hi", env={"ASSISTERS_BASE_URL": "https://api.example.invalid/v1"})
    assert result.returncode == 78
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "ASSISTERS_API_KEY" in lines[0]


def test_loopback_base_url_works_without_a_key(httpserver, base_url):
    serve_stream(httpserver, text_stream("local"))
    result = run_cli("chat", "hi", env={"ASSISTERS_BASE_URL": base_url})
    assert result.returncode == 0
    assert result.stdout == b"local"
    assert "Authorization" not in httpserver.log[0][0].headers


def test_broken_config_file_is_exit_78_naming_the_file(tmp_path, httpserver, base_url):
    config = tmp_path / "config.toml"
    config.write_text('model = "unterminated\n')
    result = run_cli("chat", "hi", env={"ASSISTERS_CONFIG": str(config), "ASSISTERS_BASE_URL": base_url})
    assert result.returncode == 78
    assert str(config) in result.stderr.decode()
    assert result.stderr.count(b"\n") == 1
    assert httpserver.log == []


def test_config_profile_and_key_command(tmp_path, httpserver, base_url):
    serve_stream(httpserver, text_stream("ok"))
    config = tmp_path / "config.toml"
    config.write_text(
        'profile = "work"\nmodel = "top-level"\n'
        f'[profiles.work]\nbase_url = "{base_url}"\nmodel = "work-model"\n'
        f'api_key_command = "printf {SECRET}"\n'
    )
    result = run_cli("chat", "hi", env={"ASSISTERS_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    assert received(httpserver)[0]["model"] == "work-model"
    assert httpserver.log[0][0].headers["Authorization"] == f"Bearer {SECRET}"
    assert_no_secret(result)


def test_flag_beats_environment_beats_config(tmp_path, httpserver, base_url):
    serve_stream(httpserver, text_stream("ok"))
    config = tmp_path / "config.toml"
    config.write_text(f'model = "from-config"\nbase_url = "{base_url}"\n')
    env = {"ASSISTERS_CONFIG": str(config)}
    run_cli("chat", "hi", env=env)
    run_cli("chat", "hi", env={**env, "ASSISTERS_MODEL": "from-env"})
    run_cli("chat", "-m", "from-flag", "hi", env={**env, "ASSISTERS_MODEL": "from-env"})
    assert [b["model"] for b in received(httpserver)] == ["from-config", "from-env", "from-flag"]


def test_connection_refused_is_a_temporary_failure():
    result = run_cli("chat", "--max-retries=0", "hi", env={"ASSISTERS_BASE_URL": "http://127.0.0.1:9/v1",
                                                           "ASSISTERS_API_KEY": SECRET})
    assert result.returncode == 75
    assert result.stderr.decode().startswith("assisters: error: cannot connect to http://127.0.0.1:9/v1")
    assert_no_secret(result)


def test_idle_read_timeout_keeps_the_partial_text(httpserver, key_env):
    def stall(request: Request) -> Response:
        def body():
            yield b"data: " + orjson.dumps(chunk("partial")) + b"\n\n"
            time.sleep(1.5)
            yield b"data: [DONE]\n\n"
        return Response(body(), content_type=EVENT_STREAM)

    httpserver.expect_request("/v1/chat/completions").respond_with_handler(stall)
    result = run_cli("chat", "--timeout", "0.3", "hi", env=key_env)
    assert result.returncode == 75
    assert result.stdout == b"partial"
    assert "nothing received for 0.3 s (idle timeout)" in result.stderr.decode()


@pytest.mark.parametrize(
    ("finish", "word"), [("length", "token limit"), ("content_filter", "content filter")]
)
def test_cut_off_answers_warn_and_succeed(httpserver, key_env, finish, word):
    serve_stream(httpserver, text_stream("cut", finish=finish))
    result = run_cli("chat", "hi", env=key_env)
    assert result.returncode == 0
    assert result.stdout == b"cut"
    stderr = result.stderr.decode()
    assert stderr.startswith("warning: ") and word in stderr


def test_reasoning_never_reaches_stdout_in_a_pipe(httpserver, key_env):
    serve_stream(httpserver, sse(chunk(reasoning_content="secret thoughts"), chunk("answer"),
                                 chunk(finish="stop")))
    result = run_cli("chat", "hi", env=key_env)
    assert result.stdout == b"answer"
    assert result.stderr == b""


def test_non_json_event_is_a_protocol_error_after_the_text(httpserver, key_env):
    serve_stream(httpserver, sse(chunk("before"), "data: not json\n\n", chunk(" after"),
                                 chunk(finish="stop")))
    result = run_cli("chat", "hi", env=key_env)
    assert result.returncode == 76
    assert result.stdout == b"before after"
    assert "not JSON" in result.stderr.decode()


def test_version_and_module_entry_point():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith(b"assisters, version ")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["chat"], "assisters chat: error: no prompt: give it as arguments or on stdin "
                   "(see 'assisters chat --help')"),
        (["chat", "--bogus", "x"], "assisters chat: error: No such option '--bogus'. "
                                   "(see 'assisters chat --help')"),
        (["nope"], "assisters: error: No such command 'nope'. (see 'assisters --help')"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args, line):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.decode() == line + "\n"
