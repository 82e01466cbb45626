"""The options every command shares, as real processes: what an argument may hold
(bytes that are not UTF-8, numbers JSON cannot carry, ``--save -``), the connection
settings (a query string in the base URL, the auth header, keys that cannot go in a
header, ``api_key_command`` only when a key is needed) and what ``-v`` shows."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.conftest import SECRET, key_input, run_cli, serve_stream, text_stream

NOT_UTF8 = os.fsdecode(b"\xff\xfe")  # what Python makes of an argument that is not UTF-8
CHAT_BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'
UNREACHABLE = "http://192.0.2.1/v1"  # TEST-NET-1: nothing may be sent there, and nothing is
MODEL_LIST = {"object": "list", "data": [{"id": "m1", "object": "model"}]}


def received(httpserver: HTTPServer) -> list[dict[str, Any]]:
    return [orjson.loads(request.get_data()) for request, _ in httpserver.log]


def one_error_line(result: Any, status: int, *fragments: str) -> str:
    assert result.returncode == status, result.stderr
    lines = result.stderr.decode("utf-8", "replace").splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0] and "internal error" not in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# -- arguments that are not valid UTF-8 ---------------------------------------------------


def test_text_arguments_that_are_not_utf8_get_replacement_characters(httpserver, key_env):
    """The prompt, -s, --stop and -o values are text: each bad byte becomes U+FFFD, as on stdin."""
    serve_stream(httpserver, text_stream("ok"))
    result = run_cli("chat", "-s", f"sys{NOT_UTF8}", "--stop", f"st{NOT_UTF8}", "-o", "user", f"u{NOT_UTF8}",
                     "-o", "metadata", '{"k": "\\ud800"}', f"hi {NOT_UTF8} there", env=key_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ok"
    body = received(httpserver)[0]
    assert body["messages"] == [{"role": "system", "content": "sys\ufffd\ufffd"},
                                {"role": "user", "content": "hi \ufffd\ufffd there"}]
    assert body["stop"] == ["st\ufffd\ufffd"]
    assert body["user"] == "u\ufffd\ufffd"
    assert body["metadata"] == {"k": "\ufffd"}


@pytest.mark.parametrize(("args", "option"), [
    (["chat", "-m", f"m{NOT_UTF8}", "hi"], "'-m' / '--model'"),
    (["debug", "-m", f"m{NOT_UTF8}", "hi"], "'-m' / '--model'"),
    (["chat", "-o", f"k{NOT_UTF8}", "1", "hi"], "'-o' / '--option'"),
    (["chat", "-m", "a\nb", "hi"], "'-m' / '--model'"),
    (["chat", "-m", "", "hi"], "'-m' / '--model'"),
    (["chat", "-o", "", "1", "hi"], "'-o' / '--option'"),
    (["raw", "--path", f"/x{NOT_UTF8}"], "'--path'"),
    (["raw", "--path", "/x\r\nHost: evil"], "'--path'"),
    (["raw", "-X", f"G{NOT_UTF8}"], "'-X' / '--method'"),
    (["raw", "-H", f"X-A: {NOT_UTF8}"], "'-H' / '--header'"),
    (["raw", "-H", f"X-{NOT_UTF8}: a"], "'-H' / '--header'"),
], ids=lambda v: repr(v) if isinstance(v, list) else None)
def test_names_that_are_not_utf8_or_hold_control_characters_are_usage_errors(httpserver, key_env, args,
                                                                              option):
    """Model names, body field names, paths, methods and headers are sent as they are:
    a bad one is exit 2 naming the option, and nothing is sent."""
    result = run_cli(*args, input=CHAT_BODY, env=key_env)
    one_error_line(result, 2, option)
    assert httpserver.log == []


def test_file_names_that_are_not_utf8_are_used_as_given(tmp_path: Path):
    """--save and raw FILE take the bytes of the name, like any Unix tool."""
    directory = os.fsencode(tmp_path)
    body_file = os.path.join(directory, b"body-\xff.json")
    with open(body_file, "wb") as out:
        out.write(b'{"model":"echo","messages":[{"role":"user","content":"hi"}]}')
    saved = os.path.join(directory, b"rec-\xfe.jsonl")
    result = run_cli("raw", "--base-url", "local", "--save", os.fsdecode(saved), os.fsdecode(body_file))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["choices"][0]["message"]["content"] == "hi"
    with open(saved, "rb") as recording:
        assert json.loads(recording.readline())["type"] == "request"
    missing = run_cli("raw", "--base-url", "local", os.fsdecode(os.path.join(directory, b"no-\xff.json")))
    one_error_line(missing, 65, "cannot read")


# -- numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "option"), [
    (["--seed", str(2**63)], "'--seed'"),
    (["--seed", str(-(2**63) - 1)], "'--seed'"),
    (["--max-tokens", str(2**64)], "'--max-tokens'"),
    (["-o", "n", str(2**64)], "'-o' / '--option'"),
    (["-o", "logit_bias", '{"1": ' + "9" * 30 + "}"], "'-o' / '--option'"),
    (["-o", "n", "1" * 5000], "'-o' / '--option'"),
    (["-o", "temperature", "1e400"], "'-o' / '--option'"),
    (["-t", "nan"], "'-t' / '--temperature'"),
    (["-t", "inf"], "'-t' / '--temperature'"),
    (["--top-p", "NaN"], "'--top-p'"),
    (["--top-p", "-inf"], "'--top-p'"),
    (["--idle-timeout", "inf"], "'--idle-timeout'"),
    (["--total-timeout", "nan"], "'--total-timeout'"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_numbers_json_cannot_carry_are_usage_errors(httpserver, key_env, args, option):
    result = run_cli("chat", *args, "hi", env=key_env)
    one_error_line(result, 2, option)
    assert httpserver.log == []


def test_numbers_at_the_edge_of_64_bits_are_sent_exactly(httpserver, key_env):
    serve_stream(httpserver, text_stream("ok"))
    result = run_cli("chat", "--seed", str(-(2**63)), "--max-tokens", str(2**63 - 1),
                     "-o", "n", str(2**64 - 1), "-o", "x", "NaN", "hi", env=key_env)
    assert result.returncode == 0, result.stderr
    body = received(httpserver)[0]
    assert (body["seed"], body["max_tokens"], body["n"]) == (-(2**63), 2**63 - 1, 2**64 - 1)
    assert body["x"] == "NaN"  # not JSON: sent as the string


@pytest.mark.parametrize("command", ["chat", "debug", "raw"])
def test_save_to_stdout_is_refused(httpserver, key_env, command):
    """stdout carries the answer; a recording there would be mixed into it."""
    result = run_cli(command, "--save", "-", *(["hi"] if command != "raw" else []), input=CHAT_BODY,
                     env=key_env)
    one_error_line(result, 2, "'--save'", "stdout")
    assert httpserver.log == []


# -- a query string in the base URL (Azure's ?api-version=) ---------------------------------


AZURE_QUERY = "api-version=2024-10-21"


@pytest.mark.parametrize("command", ["chat", "debug", "raw", "raw --path", "models"])
def test_the_base_urls_query_string_stays_after_the_joined_path(httpserver: HTTPServer, command: str):
    env = {"ASSISTERS_BASE_URL": httpserver.url_for("/v1") + "?" + AZURE_QUERY, "ASSISTERS_API_KEY": SECRET}
    if command == "models":
        httpserver.expect_request("/v1/models", method="GET", query_string=AZURE_QUERY).respond_with_json(
            MODEL_LIST)
        args: list[str] = ["models"]
    elif command == "raw --path":
        httpserver.expect_request("/v1/models", method="GET",
                                  query_string=f"limit=5&{AZURE_QUERY}").respond_with_json(MODEL_LIST)
        args = ["raw", "-X", "GET", "--path", "/models?limit=5"]
    else:
        httpserver.expect_request("/v1/chat/completions", method="POST", query_string=AZURE_QUERY
                                  ).respond_with_data(text_stream("ok"), content_type="text/event-stream")
        args = [command] if command == "raw" else [command, "hi"]
    result = run_cli(*args, input=CHAT_BODY, env=env)
    assert result.returncode == 0, result.stderr
    assert len(httpserver.log) == 1
    _, response = httpserver.log[0]
    assert response.status_code == 200  # the expectation (path and query) matched


# -- the auth header (Azure's api-key) -------------------------------------------------------


@pytest.mark.parametrize("header", ["api-key", "X-Custom-Auth"])
def test_auth_header_sends_the_bare_key_and_verbose_redacts_it(httpserver, key_env, header):
    serve_stream(httpserver, text_stream("ok"))
    result = run_cli("debug", "-v", "hi", env={**key_env, "ASSISTERS_AUTH_HEADER": header})
    assert result.returncode == 0, result.stderr
    request, _ = httpserver.log[0]
    assert request.headers[header] == SECRET
    assert "Authorization" not in request.headers
    assert f"> {header}: [REDACTED]" in result.stderr.decode().splitlines()


# -- keys that cannot go in a header, from every source, for every command -------------------

COMMANDS = {
    "chat": ["chat", "hi"],
    "debug": ["debug", "hi"],
    "raw": ["raw"],
    "models": ["models"],
}


def bad_key_env(source: str, tmp_path: Path, bad: str) -> tuple[list[str], dict[str, str]]:
    env = {"ASSISTERS_BASE_URL": UNREACHABLE, "ASSISTERS_CONFIG": str(tmp_path / "config.toml")}
    config = ""
    flags: list[str] = []
    if source == "--api-key":
        flags = ["--api-key", bad]
    elif source in ("ASSISTERS_API_KEY", "OPENAI_API_KEY"):
        env[source] = bad
    elif source == "api_key":
        config = f"api_key = {json.dumps(bad, ensure_ascii=False)}\n"
    else:  # api_key_command: its first line is the key, so the bad part is on line 1
        config = f"api_key_command = {json.dumps(['printf', '%s', bad], ensure_ascii=False)}\n"
    key_input(tmp_path / "config.toml").write_text(config, encoding="utf-8")
    return flags, env


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("source", ["--api-key", "ASSISTERS_API_KEY", "OPENAI_API_KEY", "api_key",
                                    "api_key_command"])
@pytest.mark.parametrize("bad", [f"{SECRET}\rlogin: someone", f"{SECRET}\x1b[2J", f"{SECRET}é",
                                 f"{SECRET} {SECRET}"], ids=["CR", "escape", "non-ASCII", "space"])
def test_a_key_that_cannot_go_in_a_header_is_78_sends_nothing_and_is_never_shown(
        tmp_path, command, source, bad):
    flags, env = bad_key_env(source, tmp_path, bad)
    args = COMMANDS[command]
    result = run_cli(args[0], *flags, "--connect-timeout", "1", *args[1:], input=CHAT_BODY, env=env)
    line = one_error_line(result, 78, "HTTP header", "not shown")
    assert source in line
    assert result.stdout == b""
    assert SECRET.encode() not in result.stderr


def test_a_key_with_a_newline_from_the_environment_is_78(tmp_path):
    """The newline ends the header: the class the examples above belong to."""
    result = run_cli("chat", "--base-url", UNREACHABLE, "hi",
                     env={"ASSISTERS_API_KEY": f"{SECRET}\nlogin: someone"})
    one_error_line(result, 78, "ASSISTERS_API_KEY", "line break")
    assert SECRET.encode() not in result.stderr


# -- api_key_command runs only when a key is needed -----------------------------------------


@pytest.mark.parametrize("command", ["chat", "debug", "models", "raw"])
def test_api_key_command_is_not_run_for_base_url_local(tmp_path, command):
    """A password manager that is missing (false) or prompts must not break the offline path."""
    marker = tmp_path / "ran"
    config = tmp_path / "config.toml"
    config.write_text(f'api_key_command = "touch {marker}; false"\n', encoding="utf-8")
    args = {"chat": ["chat", "-m", "echo", "hi"], "debug": ["debug", "-m", "echo", "hi"],
            "models": ["models"], "raw": ["raw"]}[command]
    body = b'{"model":"echo","messages":[{"role":"user","content":"hi"}]}'
    result = run_cli(args[0], "--base-url", "local", *args[1:], input=body,
                     env={"ASSISTERS_CONFIG": str(config), "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert result.stdout
    assert not marker.exists()


def test_api_key_command_is_not_run_for_a_loopback_url(httpserver, tmp_path):
    marker = tmp_path / "ran"
    config = tmp_path / "config.toml"
    config.write_text(f'api_key_command = ["sh", "-c", "touch {marker}; false"]\n', encoding="utf-8")
    serve_stream(httpserver, text_stream("ok"))
    result = run_cli("chat", "hi", env={"ASSISTERS_CONFIG": str(config),
                                        "ASSISTERS_BASE_URL": httpserver.url_for("/v1")})
    assert (result.returncode, result.stdout) == (0, b"ok"), result.stderr
    assert not marker.exists()
    assert "Authorization" not in httpserver.log[0][0].headers


def test_a_failing_api_key_command_for_a_remote_url_is_78(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('api_key_command = "false"\n', encoding="utf-8")
    result = run_cli("chat", "--base-url", UNREACHABLE, "hi", env={"ASSISTERS_CONFIG": str(config)})
    one_error_line(result, 78, "api_key_command", "exit status 1")


# -- credentials in the base URL --------------------------------------------------------------


@pytest.mark.parametrize("command", list(COMMANDS))
def test_user_and_password_in_the_base_url_are_refused_without_showing_them(httpserver, command):
    """httpx would send them as Basic auth in place of the key."""
    base_url = httpserver.url_for("/v1").replace("http://", f"http://user:{SECRET}@")
    args = COMMANDS[command]
    verbose = ["-v"] if command in ("debug", "raw") else []
    result = run_cli(args[0], *verbose, *args[1:], input=CHAT_BODY, env={"ASSISTERS_BASE_URL": base_url})
    one_error_line(result, 78, "user:password@", "ASSISTERS_BASE_URL")
    assert httpserver.log == []


# -- what -v shows of a credential given with -H ----------------------------------------------


def echo_headers(request: Request) -> Response:
    """A server that quotes the credential headers back, as some 401 bodies do."""
    quoted = {name: request.headers.get(name) for name in ("X-Api-Key", "api-key", "Authorization")}
    return Response(json.dumps({"error": {"message": f"bad credentials: {quoted}"}}), status=401,
                    content_type="application/json")


@pytest.mark.parametrize("header", ["X-Api-Key", "api-key", "Authorization"])
def test_a_credential_given_with_h_is_redacted_in_verbose_and_scrubbed_from_an_echo(httpserver, header):
    httpserver.expect_request("/v1/chat/completions").respond_with_handler(echo_headers)
    value = f"Bearer {SECRET}" if header == "Authorization" else SECRET
    result = run_cli("raw", "-v", "-H", f"{header}: {value}", input=CHAT_BODY,
                     env={"ASSISTERS_BASE_URL": httpserver.url_for("/v1")})
    assert result.returncode == 77, result.stderr
    assert httpserver.log[0][0].headers[header] == value  # sent as given
    assert f"> {header}: [REDACTED]" in result.stderr.decode().splitlines()
    assert SECRET.encode() not in result.stdout + result.stderr
    assert b"[REDACTED]" in result.stdout  # the body the server sent, with the key scrubbed
