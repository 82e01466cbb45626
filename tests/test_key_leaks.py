"""The key never appears in any output: a property over every command and failure mode.

A server that quotes back whatever credential it receives (in a 401 body, a 500
body, an error event inside a stream, a body that is not JSON, an HTML page, a
redirect, a response header, the answer's own text split across events, a model
list) meets every command that sends a request, and replay of what they recorded;
the Batch API commands meet it too (tests/batch/test_keys.py adds a Batch API that
quotes the key in every object and file).
Each run's stdout, stderr and every file it wrote are searched for the key in
every encoding (raw, hex, URL-encoded, base64 at any alignment: conftest.find_key).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from werkzeug import Request, Response

from tests.conftest import SECRET, chunk, find_key, run_cli, scan_tree, sse

CHAT_BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'


def quoted_key(request: Request) -> str:
    """The credential the client sent, as a careless server would quote it."""
    auth = request.headers.get("Authorization", "")
    return auth.removeprefix("Bearer ") or request.headers.get("api-key", "")


def error_body(key: str) -> bytes:
    message = f"Incorrect API key provided: {key}."
    return orjson.dumps({"error": {"message": message, "code": "invalid_api_key"}})


def respond(mode: str, request: Request) -> Response:
    key = quoted_key(request)
    models = request.path.endswith("/models")
    if mode == "content":
        if models:
            return Response(orjson.dumps({"object": "list", "data": [{"id": f"model-{key}"}]}),
                            content_type="application/json")
        third = len(key) // 3
        pieces = [key[:third], key[third : 2 * third], key[2 * third :]]
        body = sse(chunk("", role="assistant"), chunk("your key is "), *[chunk(p) for p in pieces],
                   chunk(reasoning_content=f"thinking about {key}"), chunk(finish="stop"))
        return Response(body, content_type="text/event-stream", headers={"X-Echo": key})
    if mode in ("401", "500"):
        return Response(error_body(key), status=int(mode), content_type="application/json",
                        headers={"retry-after-ms": "1"})
    if mode == "stream-error":
        body = sse(chunk("partial "), f"event: error\ndata: {error_body(key).decode()}\n\n")
        return Response(body, content_type="text/event-stream")
    if mode == "not-json":
        return Response(f"data: not json {key}\n\n".encode() + sse(chunk(finish="stop")),
                        content_type="text/event-stream")
    if mode == "html":
        return Response(f"<html><body>Login failed for {key}</body></html>", content_type="text/html")
    if mode == "redirect":
        return Response(b"", status=302, headers={"Location": f"http://example.invalid/login?key={key}"})
    raise AssertionError(mode)


MODES = ["content", "401", "500", "stream-error", "not-json", "html", "redirect"]

COMMANDS: dict[str, list[str]] = {
    "chat": ["chat", "hi"],
    "chat --json": ["chat", "--json", "hi"],
    "chat --no-stream -u": ["chat", "--no-stream", "-u", "hi"],
    "chat --save": ["chat", "--save", "{rec}", "hi"],
    "debug -v --save": ["debug", "-v", "--save", "{rec}", "hi"],
    "debug --pretty": ["debug", "--pretty", "hi"],
    "raw -v --save": ["raw", "-v", "--save", "{rec}"],
    "raw --events": ["raw", "--events"],
    "models --json": ["models", "--json"],
    "models": ["models"],
    # The Batch API commands (INPUT on stdin: the chat body above, a bare body line).
    "batch submit": ["batch", "submit"],
    "batch submit --wait -o": ["batch", "submit", "--wait", "--poll-interval", "0.01", "-o", "{out}"],
    "batch status --json": ["batch", "status", "--json", "batch_1"],
    "batch results -o": ["batch", "results", "batch_1", "-o", "{out}"],
    "batch results": ["batch", "results", "batch_1"],
    "batch cancel": ["batch", "cancel", "batch_1"],
    "batch list --json": ["batch", "list", "--json"],
}


def no_leak(result: Any, where: str) -> None:
    assert find_key(result.stdout) == [], f"{where}: key on stdout"
    assert find_key(result.stderr) == [], f"{where}: key on stderr"
    assert b"Traceback" not in result.stderr, where
    assert result.returncode != 1, (where, result.stderr)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(COMMANDS))
def test_no_command_shows_a_key_the_server_quotes_back(httpserver: Any, tmp_path: Path, name: str, mode: str):
    httpserver.expect_request(re.compile(".*")).respond_with_handler(lambda request: respond(mode, request))
    env = {"ASSISTERS_BASE_URL": httpserver.url_for("/v1"), "ASSISTERS_API_KEY": SECRET,
           "ASSISTERS_MAX_RETRIES": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    recording = tmp_path / "exchange.jsonl"
    args = [arg.replace("{rec}", str(recording)).replace("{out}", str(tmp_path / "out.jsonl"))
            for arg in COMMANDS[name]]
    result = run_cli(*args, input=CHAT_BODY if args[0] in ("raw", "batch") else b"", env=env)
    no_leak(result, f"{name} against {mode}")
    if recording.exists():
        for render in ("chat", "debug", "raw"):
            no_leak(run_cli("replay", "--as", render, str(recording)), f"replay --as {render} of {name}")
    assert scan_tree(tmp_path) == []


@pytest.mark.parametrize("source", ["flag", "env", "config", "key command"])
def test_the_key_from_any_source_is_scrubbed(httpserver: Any, tmp_path: Path, source: str):
    httpserver.expect_request(re.compile(".*")).respond_with_handler(lambda request: respond("401", request))
    env = {"ASSISTERS_BASE_URL": httpserver.url_for("/v1")}
    args = ["chat", "hi"]
    if source == "flag":
        args = ["chat", "--api-key", SECRET, "hi"]
    elif source == "env":
        env["ASSISTERS_API_KEY"] = SECRET
    else:
        config = tmp_path / "config.toml"  # an input: exempt from the guard's scan
        line = f'api_key = "{SECRET}"' if source == "config" else f"api_key_command = \"printf '{SECRET}'\""
        # A loopback URL runs api_key_command only when the same table sets both.
        config.write_text(f'base_url = "{env.pop("ASSISTERS_BASE_URL")}"\n{line}\n')
        env["ASSISTERS_CONFIG"] = str(config)
    result = run_cli(*args, env=env)
    assert result.returncode == 77, result.stderr
    no_leak(result, source)
    assert b"Incorrect API key provided: [REDACTED]." in result.stderr
