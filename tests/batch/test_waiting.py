"""Waiting for a batch (``batch/waiting.py``): polls back off, and a 429 while
polling is waited out as ``Retry-After`` says. Against ``ChatServer``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from assisters.batch.waiting import PollPolicy, wait_for_batch
from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.batch.helpers import batch_client, input_file


def test_poll_intervals_double_up_to_the_longest_with_jitter() -> None:
    poll = PollPolicy(first=2, longest=60)
    assert [poll.delay(n, rng=lambda: 1.0) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
    assert poll.delay(1, rng=lambda: 0.0) == 1.0  # at least half the interval: never a tight loop
    for bad in ({"first": 0}, {"first": 0.001}, {"first": 5, "longest": 1}):
        with pytest.raises(ValueError, match="poll intervals"):
            PollPolicy(**bad)


def test_wait_sees_the_states_go_by_and_returns_the_ended_batch(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    with ChatServer(ServeOptions(batch_delay=0.3)) as srv, batch_client(srv.base_url) as client:
        batch = client.create(client.upload(input_file(tmp_path, "a", "b"))["id"])
        done = wait_for_batch(client, batch["id"], poll=PollPolicy(first=0.02, longest=0.1),
                              on_update=seen.append)
    assert done["status"] == "completed" and seen[-1] == done
    statuses = [b["status"] for b in seen]
    assert statuses[0] == "validating" and "in_progress" in statuses
    assert len(seen) < 60  # about 0.6 s of batch at no less than 10 ms a poll, and backing off


def test_a_rate_limit_while_polling_is_waited_out(tmp_path: Path) -> None:
    notices: list[str] = []
    options = ServeOptions(batch_delay=0.2, api_fail_status=429, api_fail_times=2, retry_after=0.1)
    with ChatServer(options) as srv, batch_client(srv.base_url, retries=2, notices=notices) as client:
        srv.state.api_requests_seen = 2  # the upload and the create get through ...
        batch = client.create(client.upload(input_file(tmp_path, "a"))["id"])
        srv.state.api_requests_seen = 0  # ... and the first two polls are refused
        done = wait_for_batch(client, batch["id"], poll=PollPolicy(first=0.02, longest=0.05))
    assert done["status"] == "completed"
    assert [n.rsplit("; ", 1)[1] for n in notices] == ["retrying in 0.1 s (attempt 2 of 3)",
                                                       "retrying in 0.1 s (attempt 3 of 3)"]
