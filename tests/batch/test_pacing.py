"""The governor: AIMD concurrency, the account's pause, the server's numbers, the caps."""

from __future__ import annotations

import pytest

from assisters.batch.pacing import Governor, parse_duration
from assisters.exchange import ResponseHead


@pytest.mark.parametrize("text, seconds", [
    ("1s", 1.0), ("6m0s", 360.0), ("1h2m3s", 3723.0), ("20ms", 0.02), ("1.5s", 1.5), ("2", 2.0),
    ("0.25", 0.25), ("", None), ("soon", None), ("1x", None), ("-1", None),
])
def test_durations(text, seconds):
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def head(**headers: str) -> ResponseHead:
    return ResponseHead(200, "OK", [(k.replace("_", "-"), v) for k, v in headers.items()])


def test_a_429_halves_concurrency_once_per_wave_and_successes_grow_it_back():
    governor = Governor(8)
    marks = [governor.sent(0.0, 1) for _ in range(8)]
    assert governor.delay(0.0, 1) is None  # every slot busy
    for mark in marks[:3]:
        governor.answered(mark, None, 1.0)
    assert governor.throttled(marks[0], 2.0, 1.0) is True
    assert governor.throttled(marks[1], 2.0, 1.0) is False  # the same wave
    assert governor.limit == 4
    assert governor.delay(2.0, 1) is None  # 5 still in flight, limit 4
    for mark in marks[3:]:
        governor.answered(mark, None, 2.0)
    assert governor.delay(2.5, 1) == pytest.approx(0.5)  # the account's pause
    assert governor.delay(3.0, 1) == 0.0
    for _ in range(4):
        governor.succeeded()
    assert governor.limit == 5
    late = governor.sent(3.0, 1)
    governor.answered(late, None, 3.1)
    assert governor.throttled(late, 1.0, 3.1) is True and governor.limit == 2


def test_the_servers_remaining_requests_pace_before_the_limit():
    governor = Governor(10)
    first = governor.sent(0.0, 1)
    governor.answered(first, head(x_ratelimit_remaining_requests="2", x_ratelimit_reset_requests="3s"), 0.0)
    assert governor.delay(0.0, 1) == 0.0
    governor.sent(0.0, 1)
    governor.sent(0.0, 1)
    assert governor.delay(0.5, 1) == pytest.approx(2.5)  # both remaining are used: wait for the reset
    assert governor.delay(3.0, 1) == 0.0  # reset: unknown until the next answer says
    assert governor.in_flight == 2


def test_a_late_answer_from_an_older_request_does_not_undo_a_newer_reading():
    governor = Governor(10)
    old, new = governor.sent(0.0, 1), governor.sent(0.0, 1)
    governor.answered(new, head(x_ratelimit_remaining_requests="0", x_ratelimit_reset_requests="5s"), 0.1)
    governor.answered(old, head(x_ratelimit_remaining_requests="9", x_ratelimit_reset_requests="5s"), 0.2)
    assert governor.delay(0.3, 1) == pytest.approx(4.8)


def test_remaining_tokens_count_the_tokens_of_the_next_request():
    governor = Governor(10)
    mark = governor.sent(0.0, 100)
    governor.answered(mark, head(x_ratelimit_remaining_tokens="150", x_ratelimit_reset_tokens="1s"), 0.0)
    assert governor.delay(0.0, 150) == 0.0
    assert governor.delay(0.0, 151) == pytest.approx(1.0)


def test_the_caps_space_requests_and_tokens_evenly():
    governor = Governor(10, requests_per_minute=120, tokens_per_minute=6000)
    governor.sent(0.0, 50)
    assert governor.delay(0.0, 50) == pytest.approx(0.5)  # 60 / 120
    governor.sent(0.5, 200)
    assert governor.delay(0.5, 1) == pytest.approx(2.0)  # 250 tokens at 100 a second: at 2.5 s
