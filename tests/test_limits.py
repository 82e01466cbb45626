"""Memory stays bounded whatever one line or one body holds: the limits end to end.

Each limit ends the run with exit 76 and a message naming it. The peak resident
memory of the process is measured (``ru_maxrss`` of the CLI process, reported by
``os.wait4`` in a small spawner, so the figure is the CLI's own and not inherited
from the test process), never its time.
"""

from __future__ import annotations

import base64
import gzip
import os
import sys
from collections.abc import Iterator

import orjson
import pytest
from werkzeug import Request, Response

from tests.conftest import chunk, run_measured, serve_stream, sse

MB = 1024 * 1024
RSS_LIMIT_MB = 100

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="ru_maxrss units, posix_spawn")

# A 300 KB gzip body that inflates to a 300 MB comment line: it took 978 MB before.
BOMB_STREAM = gzip.compress(b":" + b"x" * 300_000_000 + b"\n\n", 9)


@pytest.mark.parametrize("command", ["chat", "debug", "raw --events"])
def test_a_compressed_stream_that_inflates_300_mb_stays_under_100_mb(httpserver, key_env, tmp_path, command):
    serve_stream(httpserver, BOMB_STREAM, **{"Content-Encoding": "gzip"})
    args = ["raw", "--events", "-H", "Accept-Encoding: gzip", "--no-validate", "/dev/null"] \
        if command == "raw --events" else [command, "hi"]
    status, _, stderr, peak = run_measured(tmp_path, *args, env=key_env)
    assert status == 76
    assert stderr.decode().splitlines()[-1] == (
        "assisters: error: the compressed response expands more than 500 times (1.25 MiB from 1.266 KiB; "
        "the limit on the compression ratio): a decompression bomb or a broken server")
    assert peak < RSS_LIMIT_MB, f"peak RSS {peak:.1f} MB"
    assert len(httpserver.log) == 1  # not retried


def _long_line(request: Request) -> Response:
    def body() -> Iterator[bytes]:
        yield b'data: {"choices":[{"index":0,"delta":{"content":"before"}}]}\n\n'
        yield b":"
        for _ in range(300 * 16):  # 300 MB of a comment line, 64 KiB at a time
            yield b"y" * 65536
    return Response(body(), content_type="text/event-stream")


def test_a_300_mb_line_ends_at_the_line_limit_and_stays_under_100_mb(httpserver, key_env, tmp_path):
    httpserver.expect_request("/v1/chat/completions").respond_with_handler(_long_line)
    status, stdout, stderr, peak = run_measured(tmp_path, "chat", "hi", env=key_env)
    assert (status, stdout) == (76, b"before")  # the text before it stays
    assert stderr.decode() == ("assisters: error: a line of the event stream is longer than 16 MiB "
                               "(the limit for one line)\n")
    assert peak < RSS_LIMIT_MB, f"peak RSS {peak:.1f} MB"


def test_a_compressed_error_body_is_capped_once_decompressed(httpserver, key_env, tmp_path):
    bomb = gzip.compress(b'{"error": {"message": "' + b"z" * 50_000_000 + b'"}}', 9)
    serve_stream(httpserver, bomb, status=500, content_type="application/json",
                 **{"Content-Encoding": "gzip"})
    status, _, stderr, peak = run_measured(tmp_path, "chat", "--max-retries", "0", "hi", env=key_env)
    assert status == 76
    assert stderr.decode() == ("assisters: error: the HTTP 500 error body is larger than 1 MiB once "
                               "decompressed (the limit for the HTTP 500 error body)\n")
    assert peak < RSS_LIMIT_MB, f"peak RSS {peak:.1f} MB"


def test_a_non_streamed_reply_is_capped(httpserver, key_env, tmp_path):
    reply = b'{"choices": [{"index": 0, "message": {"content": "' + b"w" * (33 * MB) + b'"}}]}'
    serve_stream(httpserver, reply, content_type="application/json")
    status, stdout, stderr, peak = run_measured(tmp_path, "chat", "--no-stream", "hi", env=key_env)
    assert (status, stdout) == (76, b"")
    assert stderr.decode() == ("assisters: error: a JSON reply is larger than 32 MiB "
                               "(the limit for a JSON reply)\n")
    assert peak < RSS_LIMIT_MB, f"peak RSS {peak:.1f} MB"


def test_the_limits_leave_a_large_real_answer_alone(httpserver, key_env, tmp_path):
    """A 4 MB base64 image in one tool-call event, gzip'd as a whole body: inside every limit."""
    arguments = '{"image": "' + base64.b64encode(os.urandom(3 * MB)).decode() + '"}'
    body = sse(chunk(role="assistant"),
               chunk(tool_calls=[{"index": 0, "id": "c1", "type": "function",
                                  "function": {"name": "show", "arguments": arguments}}]),
               chunk(finish="tool_calls"))
    serve_stream(httpserver, gzip.compress(body), **{"Content-Encoding": "gzip"})
    status, stdout, stderr, _ = run_measured(tmp_path, "chat", "--json", "hi", env=key_env)
    assert (status, stderr) == (0, b"")
    [call] = orjson.loads(stdout)["choices"][0]["message"]["tool_calls"]
    assert call["function"]["arguments"] == arguments
