"""Waiting for a provider's batch to end: poll, backing off, never in a tight loop.

The interval starts at :attr:`PollPolicy.first` and doubles up to
:attr:`PollPolicy.longest`, each wait jittered (:func:`~assisters.retry.backoff_delay`,
"equal jitter") so that many waiting clients spread out. Each poll is a
:meth:`~assisters.batch.provider.BatchClient.retrieve`, which already honours
``Retry-After`` on a 429 and retries transient failures; what it gives up on ends
the wait with that error. Ctrl-C interrupts a wait like any other: the batch keeps
running at the provider, and the caller says how to resume (``batch status`` /
``batch results``). A wait also ends at once when stdout's reader goes away.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from assisters.batch.provider import BatchClient
from assisters.batch.states import state_of
from assisters.retry import RetryPolicy, backoff_delay, wait_for_retry

MIN_POLL = 0.01  # seconds: the shortest interval a policy may ask for


@dataclass(frozen=True)
class PollPolicy:
    """How often to ask: 2 s at first, then doubling to one minute (batches take
    minutes to hours; asking more often only spends the provider's rate limit)."""

    first: float = 2.0
    longest: float = 60.0

    def __post_init__(self) -> None:
        if not MIN_POLL <= self.first <= self.longest:
            raise ValueError(f"poll intervals must satisfy {MIN_POLL} <= first <= longest")

    def delay(self, number: int, rng: Callable[[], float] = random.random) -> float:
        """The wait after poll ``number`` (1-based)."""
        return backoff_delay(RetryPolicy(base_delay=self.first, max_wait=self.longest), number, rng)


def wait_for_batch(client: BatchClient, batch_id: str, *, poll: PollPolicy = PollPolicy(),
                   on_update: Callable[[dict[str, Any]], None] | None = None,
                   stdout_fd: int | None = None) -> dict[str, Any]:
    """Poll until the batch has ended; the last batch object. ``on_update`` sees
    every poll's batch (for a progress line from ``request_counts``)."""
    number = 0
    while True:
        batch = client.retrieve(batch_id)
        if on_update is not None:
            on_update(batch)
        if state_of(batch).ended:
            return batch
        number += 1
        wait_for_retry(poll.delay(number), None, stdout_fd)
