"""The secrets choke point: what is scrubbed, across split writes, and in URLs and headers."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assisters import redact
from assisters.redact import REDACTED, ScrubbingWriter, Secret, StreamScrubber
from tests.conftest import SECRET, chunk, run_cli, serve_stream, sse

KEY = "sk-redact-unit-0123456789"


@pytest.fixture(autouse=True)
def registered() -> None:
    Secret(KEY)


def test_a_secret_registers_itself_and_never_shows_itself():
    secret = Secret("sk-another-secret-value")
    assert "sk-another" not in repr(secret) + str(secret)
    assert redact.scrub("the key sk-another-secret-value!") == f"the key {REDACTED}!"


def test_encoded_forms_are_scrubbed():
    assert redact.scrub(f"key={KEY}") == f"key={REDACTED}"
    weird = Secret('sk-"quoted"-and\\back')
    assert redact.scrub('{"k": "sk-\\"quoted\\"-and\\\\back"}') == '{"k": "[REDACTED]"}'
    assert weird.reveal()


def test_short_values_are_not_scrubbed_from_text():
    Secret("x")
    assert redact.scrub("x marks the spot") == "x marks the spot"


@given(st.text(alphabet="ab sk-", max_size=40), st.text(alphabet="ab sk-", max_size=40),
       st.lists(st.integers(0, 200), max_size=6))
def test_a_secret_split_anywhere_across_writes_never_gets_through(before: str, after: str, cuts: list[int]):
    data = f"{before}{KEY}{after}".encode()
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    scrubber = StreamScrubber()
    out = b"".join(scrubber.feed(p) for p in pieces) + scrubber.finish()
    assert KEY.encode() not in out
    assert out == f"{before}{REDACTED}{after}".encode().replace(KEY.encode(), REDACTED.encode())


def test_held_bytes_wait_only_while_they_could_be_a_secret():
    scrubber = StreamScrubber()
    assert scrubber.feed(b"ask sk-red") == b"ask "
    assert scrubber.feed(b"wood") == b"sk-redwood"
    assert scrubber.feed(b"plain") == b"plain"
    assert scrubber.finish() == b""


def test_the_scrubbing_stdout_releases_its_tail():
    out = io.BytesIO()
    writer = ScrubbingWriter(out)  # type: ignore[arg-type]
    writer.write(b"the end sk-")
    writer.flush()
    assert out.getvalue() == b"the end "
    writer.release()
    assert out.getvalue() == b"the end sk-"


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:pw@h.example/v1?api-version=2024-10-21", "https://h.example/v1?api-version=2024-10-21"),
    ("https://h.example/v1?api-key=abc&x=1", "https://h.example/v1?api-key=[REDACTED]&x=1"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
])
def test_safe_url(url: str, shown: str):
    assert redact.safe_url(url) == shown


def test_credential_headers_are_redacted():
    headers = [("Authorization", "Bearer x"), ("api-key", "y"), ("X-Api-Key", "z"), ("Accept", "a")]
    assert redact.redact_headers(headers) == [("Authorization", REDACTED), ("api-key", REDACTED),
                                              ("X-Api-Key", REDACTED), ("Accept", "a")]


# -- end to end: the server quotes the key back -------------------------------------


def test_chat_scrubs_a_key_the_server_streams_back_in_pieces(httpserver, key_env):
    pieces = [SECRET[:5], SECRET[5:17], SECRET[17:], " ok"]
    serve_stream(httpserver, sse(chunk("your key: "), *[chunk(p) for p in pieces], chunk(finish="stop")))
    result = run_cli("chat", "hi", env=key_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"your key: {REDACTED} ok".encode()


def test_a_401_quoting_the_key_is_scrubbed_everywhere(httpserver, key_env):
    body = {"error": {"message": f"Incorrect API key provided: {SECRET}.", "type": "invalid_request_error"}}
    for path in ("/v1/chat/completions", "/v1/models"):
        httpserver.expect_request(path).respond_with_json(body, status=401)
    for args in (["chat", "hi"], ["debug", "hi"], ["models"], ["raw", "-X", "GET", "--path", "/models"]):
        result = run_cli(*args, env=key_env)
        assert result.returncode == 77, (args, result.stderr)
        assert SECRET.encode() not in result.stdout + result.stderr
        assert b"Incorrect API key provided: [REDACTED]." in result.stderr, args
