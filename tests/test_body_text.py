"""A 200 reply that is not an event stream says what it was, in every command.

A captive portal's login page, a proxy's notice, a JSON body that is not JSON:
exit 76 (not retried), with the content type and a short excerpt, instead of "held
no events (empty body)" or a retried "stream ended" error. ``raw --events``, which
would print nothing, says so too.
"""

from __future__ import annotations

import gzip

import pytest

from assisters.body_text import excerpt, no_events_error
from tests.conftest import run_cli, serve_stream

PORTAL = (b"<!DOCTYPE html>\n<html>\n<head><title>Hotel WiFi &ndash; Login</title>\n"
          b"<style>body { color: red }</style></head>\n<body><p>Please accept the terms</p></body></html>\n")
RAW_BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'


def test_an_html_excerpt_is_its_title():
    assert excerpt("text/html", PORTAL) == "Hotel WiFi \u2013 Login"


def test_an_html_page_without_a_title_is_its_text_without_tags_scripts_or_styles():
    page = b"<html><script>var x = 1;</script><body><h1>Access denied</h1>\n<p>by policy &amp; law</p></body>"
    assert excerpt("text/html", page) == "Access denied by policy & law"


def test_an_untyped_body_that_starts_like_html_is_read_as_html():
    assert excerpt("", b"  <html><head><title>Gateway</title></head></html>") == "Gateway"
    assert no_events_error("", b"<html><title>Gateway</title></html>").message == (
        "the server sent an HTML page (no content type), not an event stream: Gateway")


def test_an_excerpt_is_one_short_line_with_control_characters_made_visible():
    text = excerpt("text/plain", b"first line\n\x1b]0;owned\x07second " + b"x" * 500)
    assert text.startswith("first line \\x1b]0;owned\\x07second xxx")
    assert len(text) == 100 and text.endswith("...")


@pytest.mark.parametrize(("content_type", "body", "message"), [
    ("text/html; charset=utf-8", PORTAL,
     "the server sent an HTML page (text/html), not an event stream: Hotel WiFi \u2013 Login"),
    ("text/plain", b"Service temporarily unavailable\n",
     "the server sent text/plain, not an event stream: Service temporarily unavailable"),
    ("application/octet-stream", b"\x00\x01binary",
     "the server sent application/octet-stream, not an event stream: \\x00\\x01binary"),
    ("text/event-stream", b": keep-alive\n\n: keep-alive\n\n",
     "the server's event stream held no events: : keep-alive : keep-alive"),
    ("text/event-stream", b"", "the server's response held no events (empty body)"),
])
@pytest.mark.parametrize("command", ["chat", "debug", "raw --events"])
def test_a_200_body_without_events_says_what_it_was(httpserver, key_env, command, content_type, body,
                                                    message):
    serve_stream(httpserver, body, content_type=content_type)
    args = ["raw", "--events", "-"] if command == "raw --events" else [command, "hi"]
    result = run_cli(*args, input=RAW_BODY if command == "raw --events" else b"", env=key_env)
    assert result.returncode == 76
    assert result.stderr.decode().splitlines()[-1] == f"assisters: error: {message}"
    assert len(httpserver.log) == 1  # not retried: it would come back the same
    if command != "debug":
        assert result.stdout == b""


def test_a_compressed_html_page_is_named_from_its_decompressed_text(httpserver, key_env):
    serve_stream(httpserver, gzip.compress(PORTAL), content_type="text/html", **{"Content-Encoding": "gzip"})
    result = run_cli("chat", "hi", env=key_env)
    assert result.returncode == 76
    assert result.stderr.decode() == (
        "assisters: error: the server sent an HTML page (text/html), not an event stream: "
        "Hotel WiFi \u2013 Login\n")


def test_a_json_reply_that_is_not_json_shows_an_excerpt(httpserver, key_env):
    serve_stream(httpserver, b"<html><title>Bad gateway</title></html>", content_type="application/json")
    result = run_cli("chat", "hi", env=key_env)
    assert (result.returncode, result.stdout) == (76, b"")
    assert result.stderr.decode() == ("assisters: error: the server replied application/json, but the "
                                      "body is not JSON: <html><title>Bad gateway</title></html>\n")


def test_an_html_page_with_the_stream_in_a_wrong_content_type_still_streams(httpserver, key_env):
    """Servers that label a real event stream text/plain or text/html are read as streams."""
    event = b'data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\n'
    serve_stream(httpserver, event + b"data: [DONE]\n\n", content_type="text/html")
    result = run_cli("chat", "hi", env=key_env)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"ok", b"")


def test_raw_without_events_still_copies_the_page_byte_exact(httpserver, key_env):
    serve_stream(httpserver, PORTAL, content_type="text/html")
    result = run_cli("raw", "-", input=RAW_BODY, env=key_env)
    assert (result.returncode, result.stdout, result.stderr) == (0, PORTAL, b"")


def test_a_non_2xx_html_page_is_worded_by_its_title(httpserver, key_env):
    page = b"<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"
    serve_stream(httpserver, page, status=502, content_type="text/html")
    result = run_cli("chat", "--max-retries", "0", "hi", env=key_env)
    assert result.returncode == 69
    assert result.stderr.decode() == "assisters: error: HTTP 502 BAD GATEWAY: 502 Bad Gateway\n"
