"""The HTTP side: request errors as OpenAI sends them, chunked bodies, quiet logs.

Over real loopback sockets. Timing is only ever checked with a generous lower
bound, never an upper one, so a slow machine cannot make them flaky.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.server.helpers import KEY, assert_openai_error, post, user


def test_request_errors(client: httpx.Client) -> None:
    url_of = "{}/chat/completions".format
    with ChatServer(ServeOptions()) as srv:
        error = assert_openai_error(
            post(client, srv, {"model": "x", "messages": user("hi")}),
            404,
            "The model `x` does not exist",
        )
        assert error["type"] == "invalid_request_error"
        bad_json = client.post(url_of(srv.base_url), content=b"{not json")
        error = assert_openai_error(bad_json, 400, "could not parse the JSON")
        assert error["type"] == "invalid_request_error"
        assert_openai_error(post(client, srv, {"model": "echo"}), 400, "messages")
        assert_openai_error(post(client, srv, {"model": "echo", "messages": []}), 400, "empty")
        assert_openai_error(
            post(client, srv, {"model": "echo", "messages": user("a"), "n": 9}), 400, "'n'"
        )
        assert_openai_error(client.get(f"{srv.base_url}/nowhere"), 404, "Invalid URL")
        assert_openai_error(client.get(url_of(srv.base_url)), 405, "POST")
        # The connection survived all of that (keep-alive with complete bodies).
        assert post(client, srv, {"model": "echo", "messages": user("fine")}).status_code == 200
        assert srv.requests_seen == 6  # every chat POST counts, valid or not


def test_chunked_request_body(client: httpx.Client) -> None:
    payload = orjson.dumps({"model": "echo", "messages": user("streamed  up")})

    def pieces() -> Iterator[bytes]:
        yield payload[:10]
        yield payload[10:]

    with ChatServer(ServeOptions()) as srv:
        r = client.post(f"{srv.base_url}/chat/completions", content=pieces())
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert r.json()["choices"][0]["message"]["content"] == "streamed  up"


def test_logging_quiet_by_default_and_verbose_without_keys(
    client: httpx.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    body = {"model": "echo", "messages": user("hi")}
    with ChatServer(ServeOptions()) as srv:
        post(client, srv, body)
        client.get(f"{srv.base_url}/nowhere?api-key={KEY}")
    assert capfd.readouterr().err == ""
    with ChatServer(ServeOptions(verbose=True)) as srv:
        post(client, srv, body)
        client.get(f"{srv.base_url}/nowhere?api-key={KEY}")
    err = capfd.readouterr().err
    assert err.splitlines() == ["POST /v1/chat/completions 200", "GET /v1/nowhere 404"]
    assert KEY not in err
