"""``ServeOptions`` refuses nonsense at start-up.

Over real loopback sockets. Timing is only ever checked with a generous lower
bound, never an upper one, so a slow machine cannot make them flaky.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="tokens_per_second"):
        ServeOptions(tokens_per_second=-1)
    with pytest.raises(ValueError, match="malformed_at"):
        ServeOptions(malformed_at=0)
    with pytest.raises(FileNotFoundError):
        ChatServer(ServeOptions(replay=Path("/nonexistent/recording.sse")))


def test_new_options_are_validated() -> None:
    for bad in ({"drop_after_bytes": -1}, {"drop_times": -1}, {"head_delay": -1},
                {"head_delay": float("nan")}, {"drip_ms": -1}, {"drip_ms": float("inf")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ServeOptions(**bad)


def test_batch_api_options_are_validated() -> None:
    for bad in ({"batch_delay": -1}, {"batch_delay": float("inf")}, {"batch_window": 0},
                {"max_upload_bytes": 0}, {"max_upload_bytes": 2 * 1024**3}, {"max_batch_requests": 0},
                {"api_fail_status": 302}, {"api_fail_times": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ServeOptions(**bad)
