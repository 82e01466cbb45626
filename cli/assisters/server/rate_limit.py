"""The account behind the local server: request and token rate limits, a quota, a
share of overloaded answers, and what each prompt was sent, for the batch tests.

* ``--rate-limit N`` / ``--token-limit T`` per ``--rate-window S``: a sliding window,
  as providers count. Every chat answer carries ``x-ratelimit-limit-*``,
  ``x-ratelimit-remaining-*`` and ``x-ratelimit-reset-*`` headers (OpenAI's names and
  duration format, ``1.5s``); a request over the limit gets 429 ``rate_limit_exceeded``
  with ``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms``.
* ``--quota N``: after N answered requests every request gets 429
  ``insufficient_quota``, the account-is-out-of-credit answer no client should retry.
* ``--fail-ratio R`` (``--fail-seed``): that share of requests gets 503. Whether one
  fails depends only on the seed, the request body and how many times that body was
  seen, so a test gets the same failures whatever order concurrent requests arrive in.

Counters tests assert on: ``sent`` (bodies by how many times each arrived), ``admitted``
(the arrival times of the requests let through), ``rate_limited``, ``quota_refused``,
``overloaded``.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from collections import Counter, deque
from typing import Any

import orjson

from assisters.server.api_errors import ApiError
from assisters.server.chat_request import last_user_text, prompt_tokens
from assisters.server.options import ServeOptions

MAX_ADMITTED_KEPT = 100_000  # arrival times kept for the tests (a long bench must not grow without end)


class AccountLimits:
    """Decides, per chat request, whether the account lets it through; thread-safe."""

    def __init__(self, options: ServeOptions) -> None:
        self._options = options
        self._lock = threading.Lock()
        self._window: deque[tuple[float, int]] = deque()  # (arrival, tokens) inside the window
        self._window_tokens = 0
        self.sent: Counter[str] = Counter()  # last user message -> times received
        self.admitted: deque[float] = deque(maxlen=MAX_ADMITTED_KEPT)
        self.answered = 0
        self.rate_limited = 0
        self.quota_refused = 0
        self.overloaded = 0

    def check(self, body: bytes, now: float | None = None) -> tuple[ApiError | None, dict[str, str]]:
        """The refusal for this request, if any, and the rate-limit headers of its answer."""
        now = time.monotonic() if now is None else now
        data = _json(body)
        prompt = _prompt_key(data)
        tokens = _token_cost(data)
        options = self._options
        with self._lock:
            self.sent[prompt] += 1
            seen = self.sent[prompt]
            if options.quota is not None and self.answered >= options.quota:
                self.quota_refused += 1
                return _out_of_quota(), {}
            self._expire(now)
            refusal = self._over_limit(tokens, now)
            headers = self._headers(now)
            if refusal is not None:
                self.rate_limited += 1
                return refusal, headers
            if _fails(options, body, seen):
                self.overloaded += 1
                return ApiError(503, "The server is overloaded; try again later (injected by --fail-ratio).",
                                type_="server_error", code="overloaded"), headers
            self._window.append((now, tokens))
            self._window_tokens += tokens
            self.admitted.append(now)
            self.answered += 1
            return None, self._headers(now)

    def _expire(self, now: float) -> None:
        window = self._options.rate_window
        while self._window and self._window[0][0] <= now - window:
            _, tokens = self._window.popleft()
            self._window_tokens -= tokens

    def _over_limit(self, tokens: int, now: float) -> ApiError | None:
        options = self._options
        over_requests = options.rate_limit is not None and len(self._window) >= options.rate_limit
        over_tokens = (options.token_limit is not None and self._window
                       and self._window_tokens + tokens > options.token_limit)
        if not (over_requests or over_tokens):
            return None
        wait = self._reset_in(now)
        what = "requests" if over_requests else "tokens"
        message = (f"Rate limit reached for {what} per {options.rate_window:g} s "
                   f"(injected by --rate-limit/--token-limit). Please try again in {wait:.3f}s.")
        headers = {"Retry-After": str(max(1, math.ceil(wait))),
                   "retry-after-ms": str(max(1, round(wait * 1000)))}
        return ApiError(429, message, type_="requests" if over_requests else "tokens",
                        code="rate_limit_exceeded", headers=headers)

    def _reset_in(self, now: float) -> float:
        """Seconds until the oldest request in the window leaves it."""
        if not self._window:
            return 0.0
        return max(0.0, self._window[0][0] + self._options.rate_window - now)

    def _headers(self, now: float) -> dict[str, str]:
        """OpenAI's meaning: ``reset`` is the time until the limit is back to its full
        value (here: until the newest request leaves the window)."""
        options = self._options
        headers: dict[str, str] = {}
        newest = self._window[-1][0] if self._window else now - options.rate_window
        reset = f"{max(0.0, newest + options.rate_window - now):.3f}s"
        if options.rate_limit is not None:
            headers["x-ratelimit-limit-requests"] = str(options.rate_limit)
            headers["x-ratelimit-remaining-requests"] = str(max(0, options.rate_limit - len(self._window)))
            headers["x-ratelimit-reset-requests"] = reset
        if options.token_limit is not None:
            headers["x-ratelimit-limit-tokens"] = str(options.token_limit)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, options.token_limit - self._window_tokens))
            headers["x-ratelimit-reset-tokens"] = reset
        return headers


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _prompt_key(data: dict[str, Any]) -> str:
    messages = data.get("messages")
    if not isinstance(messages, list):
        return ""
    return last_user_text([m for m in messages if isinstance(m, dict)])


def _token_cost(data: dict[str, Any]) -> int:
    """What a provider counts against a token limit: the prompt and the most it may generate."""
    messages = data.get("messages")
    prompt = prompt_tokens([m for m in messages if isinstance(m, dict)]) if isinstance(messages, list) else 0
    most = data.get("max_tokens") or data.get("max_completion_tokens")
    return prompt + (most if isinstance(most, int) and most > 0 else 0)


def _fails(options: ServeOptions, body: bytes, seen: int) -> bool:
    if options.fail_ratio <= 0:
        return False
    digest = hashlib.sha256(b"%d:%d:" % (options.fail_seed, seen) + body).digest()
    return random.Random(digest).random() < options.fail_ratio


def _out_of_quota() -> ApiError:
    message = ("You exceeded your current quota, please check your plan and billing details "
               "(injected by --quota).")
    return ApiError(429, message, type_="insufficient_quota", code="insufficient_quota")
