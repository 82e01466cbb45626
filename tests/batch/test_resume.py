"""Nothing lost, nothing paid twice: kill -9 at any moment, Ctrl-C, SIGTERM, then a rerun.

The server counts what each prompt was sent, so the tests assert that a rerun sends
only the requests that were in flight when the run died.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import orjson
import pytest

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.batch.helpers import batch_run, by_id, output_lines, prompts_file, start_batch
from tests.conftest import wait_until

SLOW = bool(os.environ.get("ASSISTERS_SLOW_TESTS"))
KILL_POINTS = 12 if SLOW else 3
PROMPTS = 60
CONCURRENCY = 8


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def whole_lines(path: Path) -> list[dict[str, object]]:
    """The lines of OUTPUT after a kill: every line whole, but the last may be torn."""
    data = path.read_bytes()
    *complete, last = data.split(b"\n")
    if last:  # the kill cut a write: the next run repairs it
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(last)
    return [orjson.loads(line) for line in complete]


def assert_rerun_sends_only_what_was_in_flight(srv: ChatServer, out: Path, before: set[str],
                                               source: Path) -> None:
    """Rerun to the end: every custom_id once; what OUTPUT held was sent exactly once;
    at most the requests in flight at the stop were sent twice."""
    result = batch_run(srv, "--prompts", str(source), "-o", str(out), "-m", "lorem", "-j", str(CONCURRENCY))
    assert result.returncode == 0, result.stderr
    lines = by_id(output_lines(out))
    assert set(lines) == {f"line-{i}" for i in range(1, PROMPTS + 1)}
    sent = srv.state.limits.sent
    for custom_id in before:
        assert sent[f"prompt {custom_id.removeprefix('line-')}"] == 1, custom_id
    resent = [prompt for prompt, count in sent.items() if count > 1]
    assert len(resent) <= CONCURRENCY
    assert all(count <= 2 for count in sent.values())


@pytest.mark.parametrize("point", range(KILL_POINTS))
def test_kill_9_at_a_random_moment_leaves_whole_lines_and_a_rerun_completes(tmp_path: Path, point: int):
    source = prompts_file(tmp_path / "q.txt", PROMPTS)
    out = tmp_path / "out.jsonl"
    with ChatServer(ServeOptions(tokens_per_second=200)) as srv:  # lorem: 64 tokens in about 0.3 s
        run = start_batch(srv, "--prompts", str(source), "-o", str(out), "-m", "lorem",
                          "-j", str(CONCURRENCY))
        wanted = random.Random(point).randint(1, PROMPTS - CONCURRENCY)
        wait_until(lambda: lines_in(out) >= wanted or run.poll() is not None)
        time.sleep(random.Random(point).random() * 0.05)  # anywhere, even mid-write
        run.kill()
        run.communicate()
        before = set(by_id(whole_lines(out)))
        assert before, "killed before the first line: the test says nothing"
        assert_rerun_sends_only_what_was_in_flight(srv, out, before, source)


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_keep_every_completed_line_and_close_the_connections(tmp_path: Path, signum,
                                                                                status):
    source = prompts_file(tmp_path / "q.txt", PROMPTS)
    out = tmp_path / "out.jsonl"
    with ChatServer(ServeOptions(tokens_per_second=100)) as srv:  # each answer streams for about 0.6 s
        run = start_batch(srv, "--prompts", str(source), "-o", str(out), "-m", "lorem",
                          "-j", str(CONCURRENCY))
        assert wait_until(lambda: lines_in(out) >= 10 and srv.active_streams >= 2)
        run.send_signal(signum)
        stdout, stderr = run.communicate(timeout=30)
        assert run.returncode == status, stderr
        assert stdout == b""
        assert wait_until(lambda: srv.active_streams == 0)
        assert srv.disconnects >= 1  # the streams in flight were cut, not read to the end
        text = stderr.decode()
        lines = by_id(output_lines(out))
        assert f"batch: {PROMPTS} requests: {len(lines)} succeeded" in text
        if signum == signal.SIGINT:
            assert text.splitlines()[-1] == "batch: interrupted"
        else:
            assert text.splitlines()[-1] == ("assisters: error: terminated by SIGTERM; the completed lines "
                                             "are kept; the same command sends the rest")
        assert len(lines) < PROMPTS
        assert_rerun_sends_only_what_was_in_flight(srv, out, set(lines), source)
