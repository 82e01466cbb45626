"""The account behind serve: latency, rate limits with their headers, quota, 503s."""

from __future__ import annotations

import time

import httpx

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.server.helpers import post, user


def body(text: str = "hi", **fields: object) -> dict[str, object]:
    return {"model": "echo", "messages": user(text), **fields}


def test_every_answer_carries_the_rate_limit_headers_and_a_request_id(client: httpx.Client):
    with ChatServer(ServeOptions(rate_limit=3, rate_window=60)) as srv:
        answers = [post(client, srv, body()) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in answers] == ["2", "1", "0"]
    assert {r.headers["x-ratelimit-limit-requests"] for r in answers} == {"3"}
    reset = answers[-1].headers["x-ratelimit-reset-requests"]
    assert reset.endswith("s") and 59 < float(reset[:-1]) <= 60
    assert len({r.headers["x-request-id"] for r in answers}) == 3
    assert all(r.headers["x-request-id"].startswith("req_") for r in answers)


def test_a_request_over_the_limit_gets_429_with_retry_after_in_both_forms(client: httpx.Client):
    with ChatServer(ServeOptions(rate_limit=2, rate_window=0.5)) as srv:
        post(client, srv, body())
        post(client, srv, body())
        refused = post(client, srv, body())
        assert srv.state.limits.rate_limited == 1
        time.sleep(0.55)
        again = post(client, srv, body())
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert refused.headers["retry-after"] == "1"  # whole seconds, rounded up
    assert 0 < int(refused.headers["retry-after-ms"]) <= 500
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert again.status_code == 200


def test_the_token_limit_counts_the_prompt_and_max_tokens(client: httpx.Client):
    with ChatServer(ServeOptions(token_limit=30, rate_window=60)) as srv:
        first = post(client, srv, body("one two three", max_tokens=20))  # 3 + 20
        second = post(client, srv, body("one two three", max_tokens=20))
    assert first.status_code == 200
    assert first.headers["x-ratelimit-remaining-tokens"] == "7"
    assert second.status_code == 429 and second.json()["error"]["type"] == "tokens"


def test_quota_then_insufficient_quota_for_every_request(client: httpx.Client):
    with ChatServer(ServeOptions(quota=2)) as srv:
        statuses = [post(client, srv, body(str(i))) for i in range(4)]
        assert srv.state.limits.quota_refused == 2
    assert [r.status_code for r in statuses] == [200, 200, 429, 429]
    error = statuses[-1].json()["error"]
    assert error["code"] == "insufficient_quota" and error["type"] == "insufficient_quota"
    assert "retry-after" not in statuses[-1].headers


def test_the_503s_depend_on_seed_body_and_repeat_count_only(client: httpx.Client):
    def failures(seed: int, order: list[int]) -> set[str]:
        with ChatServer(ServeOptions(fail_ratio=0.5, fail_seed=seed)) as srv:
            return {f"{i}" for i in order if post(client, srv, body(f"p{i}")).status_code == 503}

    forward = failures(7, list(range(20)))
    assert failures(7, list(reversed(range(20)))) == forward
    assert 3 <= len(forward) <= 17
    assert failures(8, list(range(20))) != forward


def test_latency_delays_every_answer_and_counts_what_each_prompt_was_sent(client: httpx.Client):
    with ChatServer(ServeOptions(latency_ms=150)) as srv:
        start = time.monotonic()
        post(client, srv, body("a"))
        post(client, srv, body("a"))
        post(client, srv, body("b", stream=True))
        elapsed = time.monotonic() - start
        sent = dict(srv.state.limits.sent)
    assert elapsed >= 0.45  # a lower bound only: the pause is a minimum
    assert sent == {"a": 2, "b": 1}


def test_new_options_are_checked():
    import pytest

    for bad in ({"fail_ratio": 1.5}, {"rate_limit": 0}, {"rate_window": 0}, {"latency_ms": -1},
                {"quota": -1}):
        with pytest.raises(ValueError):
            ServeOptions(**bad)  # type: ignore[arg-type]
