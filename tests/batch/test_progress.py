"""What a person sees on stderr: a live bar on a terminal, plain lines only when asked."""

from __future__ import annotations

import re
from pathlib import Path

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.batch.helpers import batch_run, env_for, on_terminal, prompts_file
from tests.conftest import cli_command


def test_a_terminal_gets_a_live_bar_then_the_summary(tmp_path: Path):
    source = prompts_file(tmp_path / "q.txt", 12)
    with ChatServer(ServeOptions(tokens_per_second=0, latency_ms=150)) as srv:
        args = cli_command("batch", "run", "--prompts", str(source), "-o", str(tmp_path / "out.jsonl"),
                           "-m", "echo", "-j", "2")
        status, screen = on_terminal(args, env_for(srv))
        again = cli_command("batch", "run", "--prompts", str(source), "-o", str(tmp_path / "again.jsonl"),
                            "-m", "echo", "-j", "2")
        _, plain = on_terminal(again, {**env_for(srv), "NO_COLOR": "1"})
    assert status == 0
    text = screen.decode()
    assert "/12 [" in text and "req/s" in text and "in flight" in text  # tqdm's bar, our postfix
    assert re.search("\r[^\n]", text)  # redrawn in place (the terminal makes each \n a \r\n)
    assert text.rstrip().splitlines()[-1].startswith("batch: tokens:")
    assert "req/s" not in plain.decode() and not re.search("\r[^\n]", plain.decode())  # NO_COLOR: no bar
    assert plain.decode().splitlines()[0].startswith("batch: 12 requests: 12 succeeded")


def test_not_a_terminal_gets_no_progress_unless_asked(tmp_path: Path):
    source = prompts_file(tmp_path / "q.txt", 6)
    with ChatServer(ServeOptions(tokens_per_second=0, latency_ms=200)) as srv:
        quiet = batch_run(srv, "--prompts", str(source), "-o", str(tmp_path / "a.jsonl"), "-m", "echo",
                          "-j", "1")
        asked = batch_run(srv, "--prompts", str(source), "-o", str(tmp_path / "b.jsonl"), "-m", "echo",
                          "-j", "1", "--progress", "--progress-interval", "0.3")
        silent = batch_run(srv, "--prompts", str(source), "-o", str(tmp_path / "c.jsonl"), "-m", "echo", "-q")
    assert [line.split(":")[0] for line in quiet.stderr.decode().splitlines()] == ["batch", "batch"]
    progress = [line for line in asked.stderr.decode().splitlines() if " done, " in line]
    assert progress and all(line.startswith("batch: ") and "/6 done, 0 failed, " in line for line in progress)
    assert (silent.returncode, silent.stderr) == (0, b"")
