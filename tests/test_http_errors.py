"""A non-2xx reply: the server's words, its error code and body kept, and quota apart from rate limits."""

from __future__ import annotations

import orjson

from assisters.errors import ExitStatus
from assisters.exchange import ResponseHead
from assisters.http_errors import status_error
from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.conftest import SECRET, run_cli


def error_body(code: str | None, type_: str = "requests") -> bytes:
    return orjson.dumps({"error": {"message": "nope", "type": type_, "param": None, "code": code}})


def test_a_rate_limit_is_retryable_and_keeps_its_body_and_code():
    head = ResponseHead(429, "Too Many Requests", [("retry-after", "2")])
    error = status_error(head, error_body("rate_limit_exceeded"))
    assert (error.status, error.retryable, error.code, error.retry_after) == (
        ExitStatus.TEMPORARY, True, "rate_limit_exceeded", 2.0)
    assert error.body == error_body("rate_limit_exceeded")


def test_insufficient_quota_is_its_own_status_and_never_retried():
    for body in (error_body("insufficient_quota"), error_body(None, type_="insufficient_quota")):
        error = status_error(ResponseHead(429, "Too Many Requests"), body)
        assert (error.status, error.retryable, error.code) == (ExitStatus.QUOTA, False, "insufficient_quota")


def test_chat_out_of_quota_exits_79_after_one_request():
    with ChatServer(ServeOptions(tokens_per_second=0, quota=0)) as srv:
        result = run_cli("chat", "-m", "echo", "hi",
                         env={"ASSISTERS_BASE_URL": srv.base_url, "ASSISTERS_API_KEY": SECRET})
        assert srv.requests_seen == 1
    assert result.returncode == 79
    assert result.stderr.decode().startswith("assisters: error: HTTP 429: You exceeded your current quota")
