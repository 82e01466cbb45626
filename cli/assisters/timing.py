"""When the parts of one exchange happened, for ``-u`` and the summary of ``debug``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Timing:
    """Monotonic clock readings of one exchange, in seconds."""

    start: float = field(default_factory=time.perf_counter)
    headers: float | None = None
    first_byte: float | None = None
    first_token: float | None = None
    end: float | None = None

    def since_start(self, when: float | None) -> float | None:
        return None if when is None else when - self.start

    def tokens_per_second(self, completion_tokens: object) -> float | None:
        """Generation speed: the tokens after the first, over the time after it."""
        if not isinstance(completion_tokens, int) or completion_tokens < 2:
            return None
        if self.first_token is None or self.end is None or self.end <= self.first_token:
            return None
        return (completion_tokens - 1) / (self.end - self.first_token)
