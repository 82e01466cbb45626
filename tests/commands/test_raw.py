"""`assisters raw` end to end: real processes, real loopback servers.

The body sent as given, the response bytes on stdout exactly as they came off
the wire.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import orjson
import pytest
from pytest_httpserver import HTTPServer

from tests.commands.corpus_reading import reference_items, run_case
from tests.conftest import (
    SECRET,
    case_body,
    chunk,
    load_case,
    needs_corpus,
    run_cli,
    sse,
)

EVENT_STREAM = "text/event-stream"


CHAT_BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'


@needs_corpus
@pytest.mark.parametrize("name", [
    "lf-basic", "content-length-framed", "close-delimited", "gzip-encoded-sse", "split-every-byte",
])
def test_raw_prints_the_body_byte_for_byte(name: str):
    result = run_case(name, "raw", input=CHAT_BODY)
    assert result.stdout == case_body(name)
    assert result.stderr == b""
    assert result.returncode == 0


@needs_corpus
def test_raw_gzip_body_stays_compressed():
    result = run_case("gzip-encoded-sse", "raw", input=CHAT_BODY)
    assert result.stdout[:2] == b"\x1f\x8b"


@needs_corpus
@pytest.mark.parametrize("name", ["lf-basic", "gzip-encoded-sse", "multiline-data-json",
                                  "comments-openrouter", "split-every-byte"])
def test_raw_events_one_compact_line_per_data_payload(name: str):
    case = load_case(name)
    result = run_case(name, "raw", "--events", input=CHAT_BODY)
    assert result.returncode == 0, result.stderr
    body = case_body(name)
    if name == "gzip-encoded-sse":
        body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
    payloads = [i[3] for i in reference_items(body)
                if i[0] == "event" and i[3] and not i[3].startswith("[DONE]")]
    lines = result.stdout.split(b"\n")
    assert lines.pop() == b""
    assert len(lines) == len(payloads)
    for line, payload in zip(lines, payloads, strict=True):
        assert orjson.loads(line) == json.loads(payload)
        assert line == orjson.dumps(orjson.loads(line))  # compact
    text = "".join(orjson.loads(line)["choices"][0]["delta"].get("content") or ""
                   for line in lines if orjson.loads(line)["choices"])
    assert text == case["expect"]["stdout"]


@needs_corpus
@pytest.mark.parametrize(("name", "status", "exit_status"), [
    ("http-404-model-not-found", 404, 65), ("http-502-html", 502, 69)])
@pytest.mark.parametrize("events", [False, True], ids=["body", "events"])
def test_raw_error_status_body_goes_to_stdout_untouched(name, status, exit_status, events):
    result = run_case(name, "raw", *(["--events"] if events else []), input=CHAT_BODY)
    assert result.stdout == case_body(name)
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and str(status) in lines[0], lines
    assert result.returncode == exit_status


@needs_corpus
def test_raw_cut_stream_keeps_what_arrived():
    result = run_case("cut-midstream-abort", "raw", input=CHAT_BODY)
    assert result.stdout == case_body("cut-midstream-abort")
    assert len(result.stderr.decode().splitlines()) == 1
    assert result.returncode == 75


def expect_raw(httpserver: HTTPServer, path: str = "/v1/chat/completions", method: str = "POST",
               body: bytes = b'{"ok":true}\n', content_type: str = "application/json") -> bytes:
    httpserver.expect_request(path, method=method).respond_with_data(body, content_type=content_type)
    return body


def test_raw_sends_stdin_as_is_with_default_headers(httpserver, key_env):
    reply = expect_raw(httpserver)
    body = b'{ "model" : "m",\n  "messages": [],\t"stream": false }\n'
    result = run_cli("raw", input=body, env=key_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == reply
    assert result.stderr == b""
    (request, _), = httpserver.log
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions"
    assert request.get_data() == body
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept-Encoding"] == "identity"
    assert request.headers["Authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize("how", ["file", "dash"])
def test_raw_body_from_a_file_or_dash(httpserver, key_env, tmp_path: Path, how: str):
    expect_raw(httpserver)
    body = '{"content": "wörld 😀"}'.encode()
    if how == "file":
        (tmp_path / "body.json").write_bytes(body)
        result = run_cli("raw", str(tmp_path / "body.json"), input=b"ignored", env=key_env)
    else:
        result = run_cli("raw", "-", input=body, env=key_env)
    assert result.returncode == 0, result.stderr
    assert httpserver.log[0][0].get_data() == body


@pytest.mark.parametrize("how", ["stdin", "file"])
def test_raw_invalid_json_is_rejected_before_sending(httpserver, key_env, tmp_path: Path, how):
    expect_raw(httpserver)
    bad = b'{"a": 1,\n "b": }'
    if how == "file":
        (tmp_path / "bad.json").write_bytes(bad)
        result = run_cli("raw", str(tmp_path / "bad.json"), env=key_env)
    else:
        result = run_cli("raw", input=bad, env=key_env)
    assert result.returncode == 65
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1
    assert "line 2, column 7" in lines[0]
    assert ("bad.json" if how == "file" else "stdin") in lines[0]
    assert httpserver.log == []


def test_raw_empty_stdin_is_invalid_json(httpserver, key_env):
    expect_raw(httpserver)
    result = run_cli("raw", input=b"", env=key_env)
    assert result.returncode == 65
    assert "line 1, column 1" in result.stderr.decode()
    assert httpserver.log == []


def test_raw_unreadable_file_sends_nothing(httpserver, key_env, tmp_path: Path):
    expect_raw(httpserver)
    result = run_cli("raw", str(tmp_path / "missing.json"), env=key_env)
    assert result.returncode == 65
    assert "missing.json" in result.stderr.decode()
    assert httpserver.log == []


def test_raw_no_validate_sends_invalid_json_exactly(httpserver, key_env):
    reply = expect_raw(httpserver, body=b"not json back", content_type="text/plain")
    body = b"not json {\x00\xff\n"
    result = run_cli("raw", "--no-validate", input=body, env=key_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == reply
    assert httpserver.log[0][0].get_data() == body


def test_raw_get_with_path_sends_no_body(httpserver, key_env):
    reply = expect_raw(httpserver, path="/v1/models", method="GET",
                       body=b'{"object":"list","data":[{"id":"m1"}]}')
    result = run_cli("raw", "-X", "GET", "--path", "/models", input=b"stdin is not read",
                     env=key_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == reply
    (request, _), = httpserver.log
    assert request.method == "GET"
    assert request.path == "/v1/models"
    assert request.get_data() == b""
    assert "Content-Type" not in request.headers
    assert request.headers.get("Content-Length") in (None, "0")
    assert request.headers["Accept-Encoding"] == "identity"


def test_raw_extra_headers_are_sent_and_override_defaults(httpserver, key_env):
    expect_raw(httpserver)
    result = run_cli("raw", "-H", "X-Test: 1", "-H", "X-Other:  two ",
                     "-H", "Content-Type: application/vnd.test+json",
                     "-H", "Accept-Encoding: gzip", input=b"{}", env=key_env)
    assert result.returncode == 0, result.stderr
    headers = httpserver.log[0][0].headers
    assert headers["X-Test"] == "1"
    assert headers["X-Other"] == "two"
    assert headers.getlist("Content-Type") == ["application/vnd.test+json"]
    assert headers.getlist("Accept-Encoding") == ["gzip"]


def test_raw_malformed_header_is_rejected_before_sending(httpserver, key_env):
    expect_raw(httpserver)
    result = run_cli("raw", "-H", "no colon here", input=b"{}", env=key_env)
    assert result.returncode == 2
    assert "Name: value" in result.stderr.decode()
    assert httpserver.log == []


BAD_HEADERS = {
    "X: a\r\nY: b": "line break",
    "X: a\nInjected: 1": "line break",
    "X\r\nY: b": "line break",
    "X Y: b": "bad header name",
    "X(1): b": "bad header name",
    ": no name": "no name",
    "X-A: é": "not ASCII",
    "X-A: 😀": "not ASCII",
    "X-A: a\x7fb": "control character",  # (a NUL cannot be in argv at all)
    "X-A: \x1b[31mred": "control character",
    "Content-Length: 5": "set by the client",
    "transfer-encoding: chunked": "set by the client",
    "HOST: example.com": "set by the client",
}


@pytest.mark.parametrize("header", list(BAD_HEADERS), ids=repr)
def test_raw_header_that_http_cannot_carry_is_a_usage_error(httpserver, key_env, header):
    """Checked before anything is sent (it once exited 75 after a try, or 1)."""
    expect_raw(httpserver)
    result = run_cli("raw", "-H", header, input=b"{}", env=key_env)
    assert result.returncode == 2, result.stderr
    line, = result.stderr.decode().splitlines()
    assert "'-H' / '--header'" in line and BAD_HEADERS[header] in line
    assert httpserver.log == []


def test_raw_header_error_never_quotes_the_value(httpserver, key_env):
    result = run_cli("raw", "-H", f"X-Api-Key: {SECRET}\r\nX: y", input=b"{}", env={
        "ASSISTERS_BASE_URL": key_env["ASSISTERS_BASE_URL"]})
    assert result.returncode == 2
    assert SECRET.encode() not in result.stderr
    assert b"'X-Api-Key' holds a line break" in result.stderr


@pytest.mark.parametrize("method", ["GE T", "é", "GET\r\n", "", "GET/1", "PO:ST"], ids=repr)
def test_raw_method_that_is_not_a_token_is_a_usage_error(httpserver, key_env, method):
    expect_raw(httpserver)
    result = run_cli("raw", "-X", method, input=b"{}", env=key_env)
    assert result.returncode == 2, result.stderr
    assert "'-X' / '--method'" in result.stderr.decode()
    assert len(result.stderr.splitlines()) == 1
    assert httpserver.log == []


def test_raw_method_is_sent_upper_case_and_an_empty_header_value_is_kept(httpserver, key_env):
    expect_raw(httpserver, method="PATCH")
    result = run_cli("raw", "-X", "patch", "-H", "X-Empty:", "-H", "X-Tab: a\tb", input=b"{}", env=key_env)
    assert result.returncode == 0, result.stderr
    (request, _), = httpserver.log
    assert request.method == "PATCH"
    assert request.headers["X-Empty"] == ""
    assert request.headers["X-Tab"] == "a\tb"


def test_raw_verbose_redacts_the_key(httpserver, key_env):
    expect_raw(httpserver)
    result = run_cli("raw", "-v", input=b"{}", env=key_env)
    assert result.returncode == 0
    assert SECRET.encode() not in result.stdout + result.stderr
    lines = result.stderr.decode().splitlines()
    assert lines[0] == f"> POST {key_env['ASSISTERS_BASE_URL']}/chat/completions"
    assert "> Authorization: [REDACTED]" in lines
    assert result.stdout == b'{"ok":true}\n'


def test_raw_events_on_a_json_reply_is_one_compact_line(httpserver, key_env):
    expect_raw(httpserver, body=b'{\n  "a": [1, 2],\n  "b": "x"\n}\n')
    result = run_cli("raw", "--events", input=b"{}", env=key_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b'{"a":[1,2],"b":"x"}\n'


def test_raw_events_keeps_non_json_payloads_and_drops_done(httpserver, key_env):
    body = sse(chunk("a"), "data: plain text\n\n", "data:\n\n", ": comment\n\n")
    expect_raw(httpserver, body=body, content_type=EVENT_STREAM)
    result = run_cli("raw", "--events", input=b"{}", env=key_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == orjson.dumps(chunk("a")) + b"\nplain text\n"
