"""Unix manners as a user meets them: `| head`, Ctrl-C, terminals. Real processes only."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
from collections.abc import Iterator

import pytest

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.conftest import SECRET, cli_command, wait_until

LONG = ["-m", "lorem", "--max-tokens", "100000"]


@pytest.fixture
def slow_server() -> Iterator[ChatServer]:
    """A long answer at 200 tokens/s: far longer than any test waits."""
    with ChatServer(ServeOptions(tokens_per_second=200)) as server:
        yield server


def env_for(server: ChatServer, **extra: str) -> dict[str, str]:
    return {**os.environ, "ASSISTERS_BASE_URL": server.base_url, "ASSISTERS_API_KEY": SECRET, **extra}


def test_head_ends_the_stream_quietly_and_closes_the_connection(slow_server):
    chat = subprocess.Popen(cli_command("chat", *LONG, "hi"), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for(slow_server))
    head = subprocess.Popen(["head", "-c", "20"], stdin=chat.stdout, stdout=subprocess.PIPE)
    assert chat.stdout is not None
    chat.stdout.close()  # only head holds the pipe now, as in a shell
    first, _ = head.communicate(timeout=30)
    _, stderr = chat.communicate(timeout=30)
    assert len(first) == 20
    assert stderr == b""
    assert chat.returncode == 141
    assert wait_until(lambda: slow_server.disconnects == 1 and slow_server.active_streams == 0)


def test_ctrl_c_keeps_the_text_exits_130_and_closes_the_connection(slow_server):
    chat = subprocess.Popen(cli_command("chat", *LONG, "hi"), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for(slow_server))
    assert chat.stdout is not None
    received = os.read(chat.stdout.fileno(), 64)
    assert received
    chat.send_signal(signal.SIGINT)
    rest, stderr = chat.communicate(timeout=30)
    assert chat.returncode == 130
    assert stderr == b""
    assert not (received + rest).endswith(b"\n")  # a newline is added only on a terminal
    assert wait_until(lambda: slow_server.disconnects == 1 and slow_server.active_streams == 0)


def run_on_terminal(args: list[str], env: dict[str, str], interrupt_after: bytes | None = None,
                    ) -> tuple[int, bytes]:
    """Run with stdout and stderr on one pseudo-terminal; returns (status, screen bytes)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal, env=env)
    os.close(terminal)
    screen = b""
    interrupted = False
    while True:
        ready, _, _ = select.select([controller], [], [], 30)
        if not ready:
            process.kill()
            break
        try:
            data = os.read(controller, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        screen += data
        if interrupt_after and not interrupted and interrupt_after in screen:
            process.send_signal(signal.SIGINT)
            interrupted = True
    os.close(controller)
    return process.wait(timeout=30), screen


def test_terminal_gets_a_final_newline_and_an_erased_spinner():
    options = ServeOptions(tokens_per_second=0, first_token_delay_ms=600)
    with ChatServer(options) as server:
        status, screen = run_on_terminal(cli_command("chat", "-m", "echo", "hello there"),
                                         env_for(server))
    assert status == 0
    spinner, _, answer = screen.rpartition(b"\r\x1b[K")
    assert b"waiting" in spinner
    assert answer == b"hello there\r\n"  # the terminal shows LF as CRLF


def test_no_color_means_no_escape_codes_on_a_terminal():
    options = ServeOptions(tokens_per_second=0, first_token_delay_ms=600)
    with ChatServer(options) as server:
        status, screen = run_on_terminal(cli_command("chat", "-m", "echo", "plain"),
                                         env_for(server, NO_COLOR="1"))
    assert status == 0
    assert screen == b"plain\r\n"


def test_ctrl_c_on_a_terminal_ends_the_line(slow_server):
    status, screen = run_on_terminal(cli_command("chat", *LONG, "hi"), env_for(slow_server),
                                     interrupt_after=b" ")
    assert status == 130
    assert screen.endswith(b"\r\n")
    assert b"Traceback" not in screen
    assert wait_until(lambda: slow_server.disconnects == 1)


def test_a_retry_notice_on_a_terminal_replaces_the_spinner():
    options = ServeOptions(head_delay=0.4, fail_status=503, fail_times=1, retry_after=0.2)
    with ChatServer(options) as server:
        status, screen = run_on_terminal(cli_command("chat", "-m", "echo", "again"), env_for(server))
    assert status == 0
    before, _, after = screen.partition(b"HTTP 503")
    assert before.endswith(b"\r\x1b[Kassisters: ")  # the spinner was erased first
    assert after.endswith(b"(attempt 2 of 3)\r\nagain\r\n")


def test_a_resume_notice_on_a_terminal_is_on_its_own_line():
    with ChatServer(ServeOptions(drop_after=1)) as server:
        status, screen = run_on_terminal(cli_command("chat", "-m", "echo", "--resume", "one two"),
                                         env_for(server, NO_COLOR="1"))
    assert status == 0
    assert screen.startswith(b"one\r\nassisters: the stream broke")
    assert screen.endswith(b"(resume 1 of 3)\r\n two\r\n")
