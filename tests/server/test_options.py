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


# Every number option, with values that once crashed the request handler (a sleep of
# inf or 1e300 s overflows; 1e-300 tokens a second is a pause of 1e300 s) or are nonsense.
BAD_NUMBERS = {
    "tokens_per_second": [1e-300, float("inf"), float("nan"), -1, 1e7],
    "stall_seconds": [float("inf"), 1e300, float("nan"), -1],
    "first_token_delay_ms": [1e300, float("inf"), float("nan"), -1],
    "head_delay": [float("inf"), 86401, -1],
    "drip_ms": [float("inf"), 60001, -1],
    "retry_after": [float("inf"), float("nan"), 1e300, -1],
    "fail_times": [-1, 2**31 + 1],
    "drop_after": [-1],
    "drop_after_bytes": [-1, 2**63],
    "drop_times": [-1],
    "stall_after": [-1],
    "malformed_at": [0],
    "fail_status": [399, 600],
    "port": [-1, 65536],
    "batch_delay": [-1, float("inf"), 86401],
    "batch_window": [0, float("inf")],
    "max_upload_bytes": [0, 2 * 1024**3],
    "max_batch_requests": [0],
    "api_fail_status": [302, 600],
    "api_fail_times": [-1],
    "context_length": [0, -1],
    "latency_ms": [-1, float("inf"), 3_600_001],
    "rate_limit": [0],
    "token_limit": [0],
    "rate_window": [0, float("inf")],
    "quota": [-1],
    "fail_ratio": [-0.1, 1.1, float("nan")],
    "fail_seed": [2**63],
}


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, vs in BAD_NUMBERS.items() for v in vs])
def test_every_number_option_is_bounded(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{name} \\(--{name.replace('_', '-')}\\) must be"):
        ServeOptions(**{name: value})


def test_the_table_covers_every_number_option() -> None:
    """An option added without bounds fails here."""
    import dataclasses

    numbers = {f.name for f in dataclasses.fields(ServeOptions) if f.type in ("int", "float", "int | None",
                                                                           "float | None")}
    assert numbers == set(BAD_NUMBERS)


@pytest.mark.parametrize("good", [{"tokens_per_second": 0}, {"tokens_per_second": 1e6},
                                  {"tokens_per_second": 1 / 86400}, {"stall_seconds": 86400},
                                  {"first_token_delay_ms": 86_400_000}, {"retry_after": 0}])
def test_edge_values_are_accepted(good: dict[str, float]) -> None:
    ServeOptions(**good)
