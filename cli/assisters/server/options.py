"""How the local server behaves: :class:`ServeOptions`, every fault off by default,
checked once so that a typo fails at start-up instead of as an odd stream."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

MAX_UPLOAD_LIMIT = 1024 * 1024 * 1024  # an upload is held in memory while it is read: 1 GiB at most


@dataclass
class ServeOptions:
    """How the server behaves; every fault is off by default.

    Streaming faults count *content* chunks (one token of one choice each), not the
    role, finish or usage chunks, so ``drop_after=3`` means "three tokens got through".
    ``drop_after_bytes`` counts bytes of the SSE body instead (before chunked framing).
    Both cut only the first ``drop_times`` streaming chat requests (0: every one), so
    a client that resumes gets a complete answer on its next request.
    """

    host: str = "127.0.0.1"
    port: int = 0  # 0 picks a free port
    tokens_per_second: float = 50.0  # pacing for model "lorem" (0 = no pause)
    fail_status: int | None = None  # answer this HTTP status with an OpenAI-style error ...
    fail_times: int = 1  # ... for the first K chat requests (then normal); 0 = forever
    retry_after: float | None = None  # send Retry-After: S with the injected failure
    drop_after: int | None = None  # streaming: cut the connection after N content chunks
    drop_after_bytes: int | None = None  # streaming: cut after exactly B body bytes
    drop_times: int = 1  # the drops apply to the first K streaming requests; 0 = all
    reset: bool = False  # drop with a TCP RST ("connection reset") instead of a FIN
    stall_after: int | None = None  # streaming: after N content chunks, pause ...
    stall_seconds: float = 0.0  # ... this long, then continue
    malformed_at: int | None = None  # streaming: the Nth content chunk (1-based) is not JSON
    first_token_delay_ms: float = 0.0  # pause before the first chunk
    head_delay: float = 0.0  # seconds to wait before the response head of a chat request
    drip_ms: float | None = None  # streaming: one body byte per HTTP chunk, MS apart
    echo_prefix: bool = False  # continuing: send the given prefix again before the rest
    replay: Path | None = None  # answer every chat request with a recording (or raw SSE bytes)
    default_model: str | None = None  # serve unknown model names with this model
    context_length: int | None = None  # refuse prompts of more tokens, as OpenAI does (400)
    verbose: bool = False  # one stderr line per request: method, path, status
    batch_api: bool = True  # serve the Files and Batches API (/v1/files, /v1/batches)
    batch_delay: float = 0.0  # seconds a batch stays validating, then again in_progress
    batch_window: float = 86400.0  # a batch not done this many seconds after creation expires
    max_upload_bytes: int = 16 * 1024 * 1024  # the largest file POST /v1/files accepts
    max_batch_requests: int = 50_000  # the most requests one batch input file may hold
    api_fail_status: int | None = None  # answer the Files/Batches API with this status ...
    api_fail_times: int = 1  # ... for its first K requests (then normal); 0 = forever
    # The account (server/rate_limit.py): latency, rate limits, quota, overload.
    latency_ms: float = 0.0  # pause before answering each chat request
    rate_limit: int | None = None  # chat requests let through per rate_window ...
    token_limit: int | None = None  # ... and tokens (prompt + max_tokens) per rate_window
    rate_window: float = 60.0  # seconds, a sliding window
    quota: int | None = None  # after this many answered requests: 429 insufficient_quota
    fail_ratio: float = 0.0  # this share of chat requests gets 503 ...
    fail_seed: int = 0  # ... chosen by this seed, the body and its repeat count

    def __post_init__(self) -> None:
        problems = _option_problems(self)
        if problems:
            raise ValueError("invalid server options: " + "; ".join(problems))
        if self.replay is not None:
            self.replay = Path(self.replay)


# The longest pause any option may ask for: a day. Longer is a typo, and a sleep of
# 1e300 s (or 1 / 1e-300 tokens per second) overflows the clock and kills the handler.
MAX_PAUSE_SECONDS = 86400.0


def _within(value: float | int | None, low: float, high: float, *, optional: bool = False) -> bool:
    """``low <= value <= high`` for a real number (not nan, not a bool); None when optional."""
    if value is None:
        return optional
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return low <= value <= high and not math.isnan(value)


def _option_problems(o: ServeOptions) -> list[str]:
    """Reject nonsense early, so a typo fails at startup instead of as an odd stream
    or a request handler that dies (one table: each option, its check, its bounds)."""
    day, big = MAX_PAUSE_SECONDS, 2**31
    checks = [
        ("port", _within(o.port, 0, 65535), "0..65535"),
        # 0: no pause; otherwise at least one token a day, at most a million a second
        ("tokens_per_second", o.tokens_per_second == 0 or _within(o.tokens_per_second, 1 / day, 1e6),
         "0, or from 1/86400 to 1000000"),
        ("fail_status", _within(o.fail_status, 400, 599, optional=True), "400..599"),
        ("fail_times", _within(o.fail_times, 0, big), ">= 0"),
        ("retry_after", _within(o.retry_after, 0, day, optional=True), f"seconds from 0 to {day:g}"),
        ("drop_after", _within(o.drop_after, 0, big, optional=True), ">= 0"),
        ("drop_after_bytes", _within(o.drop_after_bytes, 0, 2**62, optional=True), ">= 0"),
        ("drop_times", _within(o.drop_times, 0, big), ">= 0"),
        ("stall_after", _within(o.stall_after, 0, big, optional=True), ">= 0"),
        ("stall_seconds", _within(o.stall_seconds, 0, day), f"seconds from 0 to {day:g}"),
        ("malformed_at", _within(o.malformed_at, 1, big, optional=True), ">= 1"),
        ("first_token_delay_ms", _within(o.first_token_delay_ms, 0, day * 1000),
         f"milliseconds from 0 to {day * 1000:.0f}"),
        ("head_delay", _within(o.head_delay, 0, day), f"seconds from 0 to {day:g}"),
        ("drip_ms", _within(o.drip_ms, 0, 60000, optional=True), "milliseconds from 0 to 60000"),
        ("batch_delay", _within(o.batch_delay, 0, day), f"seconds from 0 to {day:g}"),
        ("batch_window", _within(o.batch_window, 0.001, 365 * day), f"seconds from 0.001 to {365 * day:g}"),
        ("max_upload_bytes", _within(o.max_upload_bytes, 1, MAX_UPLOAD_LIMIT), f"1..{MAX_UPLOAD_LIMIT}"),
        ("max_batch_requests", _within(o.max_batch_requests, 1, big), ">= 1"),
        ("api_fail_status", _within(o.api_fail_status, 400, 599, optional=True), "400..599"),
        ("api_fail_times", _within(o.api_fail_times, 0, big), ">= 0"),
        ("context_length", _within(o.context_length, 1, big, optional=True), ">= 1"),
        ("latency_ms", _within(o.latency_ms, 0, 3_600_000), "milliseconds from 0 to 3600000"),
        ("rate_limit", _within(o.rate_limit, 1, big, optional=True), ">= 1"),
        ("token_limit", _within(o.token_limit, 1, 2**62, optional=True), ">= 1"),
        ("rate_window", _within(o.rate_window, 0.001, day), f"seconds from 0.001 to {day:g}"),
        ("quota", _within(o.quota, 0, 2**62, optional=True), ">= 0"),
        ("fail_ratio", _within(o.fail_ratio, 0, 1), "from 0 to 1"),
        ("fail_seed", _within(o.fail_seed, -(2**63), 2**63 - 1), "a 64-bit integer"),
    ]
    return [f"{name} (--{name.replace('_', '-')}) must be {bounds}, not {getattr(o, name)!r}"
            for name, ok, bounds in checks if not ok]
