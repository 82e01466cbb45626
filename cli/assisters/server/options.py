"""How the local server behaves: :class:`ServeOptions`, every fault off by default,
checked once so that a typo fails at start-up instead of as an odd stream."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


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
    verbose: bool = False  # one stderr line per request: method, path, status
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


def _option_problems(o: ServeOptions) -> list[str]:
    """Reject nonsense early, so a typo fails at startup instead of as an odd stream."""
    checks = {
        "port must be 0..65535": 0 <= o.port <= 65535,
        "tokens_per_second must be >= 0": o.tokens_per_second >= 0,
        "fail_status must be 400..599": o.fail_status is None or 400 <= o.fail_status <= 599,
        "fail_times must be >= 0": o.fail_times >= 0,
        "retry_after must be >= 0": o.retry_after is None or o.retry_after >= 0,
        "drop_after must be >= 0": o.drop_after is None or o.drop_after >= 0,
        "drop_after_bytes must be >= 0": o.drop_after_bytes is None or o.drop_after_bytes >= 0,
        "drop_times must be >= 0": o.drop_times >= 0,
        "stall_after must be >= 0": o.stall_after is None or o.stall_after >= 0,
        "stall_seconds must be >= 0": o.stall_seconds >= 0,
        "malformed_at must be >= 1": o.malformed_at is None or o.malformed_at >= 1,
        "first_token_delay_ms must be >= 0": o.first_token_delay_ms >= 0,
        "head_delay must be a finite number >= 0": 0 <= o.head_delay < math.inf,
        "drip_ms must be a finite number >= 0": o.drip_ms is None or 0 <= o.drip_ms < math.inf,
        "latency_ms must be a finite number >= 0": 0 <= o.latency_ms < math.inf,
        "rate_limit must be >= 1": o.rate_limit is None or o.rate_limit >= 1,
        "token_limit must be >= 1": o.token_limit is None or o.token_limit >= 1,
        "rate_window must be a finite number > 0": 0 < o.rate_window < math.inf,
        "quota must be >= 0": o.quota is None or o.quota >= 0,
        "fail_ratio must be 0..1": 0 <= o.fail_ratio <= 1,
    }
    return [message for message, ok in checks.items() if not ok]
