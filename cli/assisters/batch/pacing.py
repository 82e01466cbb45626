"""When the next request of a batch may go: rate limits are the account's, not a request's.

:class:`Governor` answers "may a request go now, and if not, how long until it may":

* **concurrency, AIMD**: at most ``limit`` requests in flight; a 429 halves it (once
  per wave: the 429s of requests already in flight when it was halved do not halve it
  again), and each run of ``limit`` successes in a row adds one, up to ``-j``;
* **the account's pause**: after a 429 no request goes, retries included, until its
  ``Retry-After`` (or the backoff) has passed;
* **the server's own numbers**: ``x-ratelimit-remaining-requests`` / ``-tokens`` and
  ``x-ratelimit-reset-requests`` / ``-tokens`` (OpenAI's duration format, ``6m0s``,
  ``1.5s``, ``20ms``) of the newest answer; once the requests sent since then use up
  what remained, nothing goes until the reset, so the limit is not hit at all;
* **the caps** ``--max-requests-per-minute`` and ``--max-tokens-per-minute``: requests
  evenly spaced, ``60 / rpm`` seconds apart, and tokens at ``tpm / 60`` a second (a
  request's tokens: its estimated prompt plus its ``max_tokens``, what providers count).

Used by the engine's main thread only, so it keeps no lock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from assisters.exchange import ResponseHead

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)")


def parse_duration(text: str) -> float | None:
    """``6m0s``, ``1h2m``, ``1.5s``, ``20ms`` or a bare number of seconds; None when unreadable."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if value >= 0 else None
    total, position = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            return None
        number, unit = float(match[1]), match[2]
        total += number * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
        position = match.end()
    return total if position == len(text) else None


def _count(text: str) -> int | None:
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


@dataclass
class _Budget:
    """What the server said remains of one limit (requests or tokens), and when it resets."""

    remaining: int | None = None
    reset_at: float = 0.0
    mark: int = 0  # how much of it had been sent, counting the answer that said so

    def observe(self, head: ResponseHead, kind: str, mark: int, now: float) -> None:
        remaining = _count(head.header(f"x-ratelimit-remaining-{kind}"))
        reset = parse_duration(head.header(f"x-ratelimit-reset-{kind}"))
        if remaining is None or reset is None:
            return
        reset_at = now + reset
        if self.remaining is not None and now < self.reset_at and mark < self.mark:
            return  # an older request's answer, arriving late: it knows less
        self.remaining, self.reset_at, self.mark = remaining, reset_at, mark

    def wait(self, now: float, cost: int, sent: int) -> float:
        """Seconds until ``cost`` more fits, given ``sent`` in all so far."""
        if self.remaining is None:
            return 0.0
        if now >= self.reset_at:
            self.remaining = None  # reset: what remains is unknown until the next answer says
            return 0.0
        if self.remaining - (sent - self.mark) >= cost:
            return 0.0
        return self.reset_at - now


class Governor:
    """Concurrency, the account's pause, the server's limits and the caps, in one place."""

    def __init__(self, concurrency: int, *, requests_per_minute: float | None = None,
                 tokens_per_minute: float | None = None) -> None:
        self.ceiling = concurrency
        self.limit = concurrency
        self.in_flight = 0
        self.paused_until = 0.0
        self.rate_limited = 0  # 429s seen
        self.sent_requests = 0
        self.sent_tokens = 0
        self._rpm = requests_per_minute
        self._tpm = tokens_per_minute
        self._next_request = 0.0
        self._next_tokens = 0.0
        self._successes = 0
        self._halved_at = -1  # sent_requests when the limit was last halved
        self._requests = _Budget()
        self._tokens = _Budget()

    def delay(self, now: float, tokens: int) -> float | None:
        """0 when a request of ``tokens`` may go now; seconds to wait; None while every
        slot is busy (wait for an answer)."""
        if self.in_flight >= self.limit:
            return None
        return max(0.0, self.paused_until - now, self._next_request - now, self._next_tokens - now,
                   self._requests.wait(now, 1, self.sent_requests),
                   self._tokens.wait(now, tokens, self.sent_tokens))

    def sent(self, now: float, tokens: int) -> tuple[int, int]:
        """A request went; returns its marks (requests and tokens sent, itself included)."""
        self.in_flight += 1
        self.sent_requests += 1
        self.sent_tokens += tokens
        if self._rpm:
            self._next_request = max(now, self._next_request) + 60.0 / self._rpm
        if self._tpm:
            self._next_tokens = max(now, self._next_tokens) + tokens * 60.0 / self._tpm
        return self.sent_requests, self.sent_tokens

    def answered(self, marks: tuple[int, int], head: ResponseHead | None, now: float) -> None:
        """A request's attempt ended (with an answer head, if one came)."""
        self.in_flight -= 1
        if head is not None:
            self._requests.observe(head, "requests", marks[0], now)
            self._tokens.observe(head, "tokens", marks[1], now)

    def succeeded(self) -> None:
        self._successes += 1
        if self._successes >= self.limit and self.limit < self.ceiling:
            self.limit += 1
            self._successes = 0

    def throttled(self, marks: tuple[int, int], wait: float, now: float) -> bool:
        """A 429: everyone waits ``wait`` seconds; returns whether concurrency was halved."""
        self.rate_limited += 1
        self.paused_until = max(self.paused_until, now + wait)
        self._successes = 0
        if marks[0] <= self._halved_at:
            return False  # in flight when the limit was last halved: the same wave
        self._halved_at = self.sent_requests
        halved = max(1, self.limit // 2)
        changed = halved != self.limit
        self.limit = halved
        return changed
