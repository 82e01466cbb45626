"""A rate-limited account, seen from the server: the batch mostly keeps to the limit."""

from __future__ import annotations

from pathlib import Path

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.batch.helpers import batch_run, by_id, output_lines, prompts_file


def most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_a_rate_limited_batch_paces_itself_and_every_request_succeeds(tmp_path: Path):
    source = prompts_file(tmp_path / "q.txt", 50)
    out = tmp_path / "out.jsonl"
    with ChatServer(ServeOptions(tokens_per_second=0, latency_ms=20, rate_limit=10, rate_window=1)) as srv:
        result = batch_run(srv, "--prompts", str(source), "-o", str(out), "-m", "echo", "-j", "16",
                           "--max-retries", "10")
        limits = srv.state.limits
        rate_limited, admitted = limits.rate_limited, list(limits.admitted)
    assert result.returncode == 0, result.stderr
    assert len(by_id(output_lines(out))) == 50
    assert len(admitted) == 50 and most_in_any_window(admitted, 1.0) <= 10
    # A client that did not pace would meet hundreds of 429s here (16 at once, 50 a second
    # at this latency); the headers and the account-wide pause keep it to a few waves
    # (about 9 on an idle machine: the first wave, before any answer told the limit).
    assert rate_limited <= 20, rate_limited
    assert f"{rate_limited} retried" in result.stderr.decode()


def test_max_requests_per_minute_keeps_under_the_limit_without_a_single_429(tmp_path: Path):
    source = prompts_file(tmp_path / "q.txt", 8)
    with ChatServer(ServeOptions(tokens_per_second=0, rate_limit=5, rate_window=1)) as srv:
        result = batch_run(srv, "--prompts", str(source), "-o", str(tmp_path / "out.jsonl"), "-m", "echo",
                           "-j", "8", "--max-requests-per-minute", "120")
        assert srv.state.limits.rate_limited == 0
        assert most_in_any_window(list(srv.state.limits.admitted), 1.0) <= 3
    assert result.returncode == 0, result.stderr


def test_max_tokens_per_minute_spaces_requests_by_their_size(tmp_path: Path):
    source = prompts_file(tmp_path / "q.txt", 4)  # about 6 tokens each, plus max_tokens 4
    with ChatServer(ServeOptions(tokens_per_second=0, token_limit=25, rate_window=1)) as srv:
        result = batch_run(srv, "--prompts", str(source), "-o", str(tmp_path / "out.jsonl"), "-m", "echo",
                           "--max-tokens", "4", "--max-tokens-per-minute", "900")  # 15 a second
        assert srv.state.limits.rate_limited == 0
    assert result.returncode == 0, result.stderr
