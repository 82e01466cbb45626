"""The retry and resume rules in isolation: waits, Retry-After, the echoed prefix, usage sums."""

from __future__ import annotations

import email.utils

import orjson
import pytest

from assisters.errors import HTTPStatusError, TemporaryError
from assisters.exchange import ResponseHead
from assisters.http_errors import retry_after_seconds
from assisters.retry import RetryPolicy, _resume_body, _Shown, _SkipEcho, _summed, backoff_delay, retry_delay


class Collect:
    def __init__(self) -> None:
        self.out: list[str] = []

    def text(self, text: str) -> None:
        self.out.append(text)

    def reasoning(self, text: str) -> None:
        self.out.append(f"<r:{text}>")


def head(**headers: str) -> ResponseHead:
    return ResponseHead(429, "Too Many Requests", list(headers.items()))


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"Retry-After": "3"}, 3.0),
    ({"Retry-After": "0.5"}, 0.5),
    ({"Retry-After": " 7 "}, 7.0),
    ({"retry-after-ms": "250"}, 0.25),
    ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
    ({"retry-after-ms": "soon", "Retry-After": "9"}, 9.0),
    ({"Retry-After": "-1"}, None),
    ({"Retry-After": "nan"}, None),
    ({"Retry-After": "inf"}, None),
    ({"Retry-After": "tomorrow"}, None),
    ({}, None),
])
def test_retry_after_forms(headers, seconds):
    assert retry_after_seconds(head(**headers)) == seconds


def test_retry_after_as_an_http_date():
    now = 1_800_000_000.0
    assert retry_after_seconds(head(**{"Retry-After": email.utils.formatdate(now + 42, usegmt=True)}),
                               now=now) == 42.0
    past = email.utils.formatdate(now - 100, usegmt=True)
    assert retry_after_seconds(head(**{"Retry-After": past}), now=now) == 0.0


def test_backoff_doubles_with_jitter_and_is_capped():
    policy = RetryPolicy(base_delay=1.0, max_wait=5.0)
    assert [backoff_delay(policy, n, lambda: 0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 2.5]
    assert [backoff_delay(policy, n, lambda: 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


def test_the_servers_wait_is_used_exactly_within_the_caps():
    policy = RetryPolicy(max_wait=10.0, max_total_wait=15.0)
    error = HTTPStatusError(429, "HTTP 429: slow down")
    error.retry_after = 8.0
    assert retry_delay(policy, 1, error, waited=0.0) == 8.0
    with pytest.raises(TemporaryError, match="would pass the 15 s limit on all retry waits"):
        retry_delay(policy, 2, error, waited=8.0)
    error.retry_after = 11.0
    with pytest.raises(TemporaryError, match="asks to retry after 11 s, more than the 10 s limit"):
        retry_delay(policy, 1, error, waited=0.0)


def skip_echo(prefix: str, *reads: str, completed: bool = True) -> tuple[str, bool]:
    sink = Collect()
    skipper = _SkipEcho(_Shown(sink, keep_text=False), prefix)
    for read in reads:
        skipper.text(read)
    skipper.finish(completed)
    return "".join(sink.out), skipper.echoed


@pytest.mark.parametrize(("reads", "shown", "echoed"), [
    (["Hello", " wor", "ld"], "ld", True),  # the prefix came back in pieces
    (["Hello wor", "ld"], "ld", True),
    (["Hello world"], "ld", True),
    (["ld", "!"], "ld!", False),  # an ordinary continuation
    (["He", "y"], "Hey", False),  # starts like the prefix, then is not it
    (["Hello wor"], "", True),  # exactly the prefix, then the answer ended
    (["Hel"], "Hel", False),  # a short answer that happens to start like the prefix
])
def test_an_echoed_prefix_is_skipped_and_nothing_else(reads, shown, echoed):
    assert skip_echo("Hello wor", *reads) == (shown, echoed)


def test_a_break_in_the_middle_of_an_echo_shows_nothing():
    assert skip_echo("Hello wor", "Hel", completed=False) == ("", False)


def test_text_stays_in_order_with_reasoning():
    sink = Collect()
    skipper = _SkipEcho(_Shown(sink, keep_text=False), "ab")
    skipper.reasoning("think")
    skipper.text("a")
    skipper.text("bc")
    assert sink.out == ["<r:think>", "c"]


def test_shown_text_is_kept_only_when_asked():
    kept, dropped = _Shown(Collect(), keep_text=True), _Shown(Collect(), keep_text=False)
    for shown in (kept, dropped):
        shown.text("a")
        shown.text("b")
    assert (kept.so_far(), dropped.so_far()) == ("ab", "")
    assert kept.any and dropped.any and kept.reads == 2


def test_usage_is_summed_field_by_field():
    first = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
             "completion_tokens_details": {"reasoning_tokens": 2}}
    second = {"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12,
              "completion_tokens_details": {"reasoning_tokens": 1}, "cost": "n/a"}
    assert _summed(first, second) == {"prompt_tokens": 13, "completion_tokens": 7, "total_tokens": 20,
                                      "completion_tokens_details": {"reasoning_tokens": 3}, "cost": "n/a"}


def test_the_resumed_body_appends_the_text_and_the_fields():
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'
    resumed = _resume_body(body, "Hel", {"continue_final_message": True, "add_generation_prompt": False})
    assert orjson.loads(resumed) == {
        "model": "m", "stream": True, "continue_final_message": True, "add_generation_prompt": False,
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hel"}]}
