"""What a batch run did, counted as it goes, and said at the end (stderr and ``--summary-json``)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BatchStats:
    """Counters of one run; the engine's main thread is the only writer."""

    requests: int = 0  # lines in INPUT
    skipped: int = 0  # already in OUTPUT from an earlier run
    to_send: int = 0
    succeeded: int = 0
    failed: Counter[str] = field(default_factory=Counter)  # by kind: http_503, temporary, ...
    retried: int = 0  # attempts that were retries
    rate_limited: int = 0  # 429s received
    prompt_tokens: int = 0
    completion_tokens: int = 0
    in_flight: int = 0
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    stopped: str | None = None  # interrupted, terminated, auth, quota
    stop_message: str = ""

    @property
    def failures(self) -> int:
        return sum(self.failed.values())

    @property
    def finished(self) -> int:
        return self.succeeded + self.failures

    @property
    def not_sent(self) -> int:
        """Requests with no line yet: a rerun sends them."""
        return max(0, self.to_send - self.finished)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def elapsed(self) -> float:
        return (self.ended if self.ended is not None else time.monotonic()) - self.started

    def add_usage(self, usage: object) -> None:
        if isinstance(usage, dict):
            for key in ("prompt_tokens", "completion_tokens"):
                value = usage.get(key)
                if isinstance(value, int) and not isinstance(value, bool):
                    setattr(self, key, getattr(self, key) + value)

    def as_json(self, output: str | None, status: int) -> dict[str, Any]:
        wall = self.elapsed()
        return {
            "requests": self.requests,
            "skipped": self.skipped,
            "sent": self.to_send,
            "succeeded": self.succeeded,
            "failed": self.failures,
            "failed_by_class": dict(sorted(self.failed.items())),
            "not_sent": self.not_sent,
            "retried": self.retried,
            "rate_limited": self.rate_limited,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.tokens,
            "wall_seconds": round(wall, 3),
            "requests_per_second": round(self.finished / wall, 2) if wall > 0 else None,
            "tokens_per_second": round(self.tokens / wall, 1) if wall > 0 else None,
            "stopped": self.stopped,
            "output": output,
            "exit_status": status,
        }

    def lines(self, output: str | None) -> list[str]:
        """The summary on stderr: what happened, tokens, speed."""
        failed = f"{self.failures} failed"
        if self.failed:
            failed += " (" + ", ".join(f"{count} {kind}" for kind, count in sorted(self.failed.items())) + ")"
        skipped = f"{self.skipped} skipped (already in {output})" if output else f"{self.skipped} skipped"
        parts = [f"{self.succeeded} succeeded", failed, f"{self.retried} retried", skipped]
        if self.not_sent:
            parts.append(f"{self.not_sent} not sent (a rerun sends them)")
        wall = self.elapsed()
        rate = f"{self.finished / wall:.1f} requests/s, {self.tokens / wall:.1f} tokens/s" if wall > 0 else ""
        lines = [
            f"batch: {self.requests} requests: " + ", ".join(parts),
            f"batch: tokens: {self.prompt_tokens} prompt + {self.completion_tokens} completion = "
            f"{self.tokens}; {wall:.2f} s, {rate}".rstrip(", "),
        ]
        if self.stopped == "interrupted":  # the other stops end with their own error line
            lines.append("batch: interrupted")
        return lines
