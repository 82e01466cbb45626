"""The standard streams as a shell hands them over: closed, full, non-blocking.

Real processes only: the shell's redirections (``>&-``, ``2>/dev/full``, ``<&-``)
are applied by bash, and non-blocking pipes are made here with ``fcntl``, exactly
as a parent process would leave them.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.conftest import SECRET, cli_command

LOCAL = ["--base-url", "local"]
NO_SERVER = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there
CLOSED_STDOUT = "cannot write to stdout: stdout is closed"
FULL_DISK = "cannot write to stdout: No space left on device"
needs_dev_full = pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")


def shell(args: list[str], redirect: str, *, input: bytes = b"",
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """``assisters ARGS REDIRECT`` as bash runs it; stdout and stderr captured unless
    the redirection replaces them."""
    script = 'exec "$@" ' + redirect
    return subprocess.run(["bash", "-c", script, "assisters", *cli_command(*args)], input=input,
                          capture_output=True, env={**os.environ, **(env or {})}, timeout=60)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stdio") / "hi.jsonl"
    made = subprocess.run(cli_command("chat", *LOCAL, "-m", "echo", "--save", str(path), "hi"),
                          capture_output=True, timeout=60)
    assert made.returncode == 0, made.stderr
    return path


# Every command, each with the arguments that make it write to stdout.
WRITERS = {
    "--version": ["--version"],
    "--help": ["--help"],
    "chat --help": ["chat", "--help"],
    "chat": ["chat", *LOCAL, "-m", "echo", "hi"],
    "chat --json": ["chat", *LOCAL, "-m", "echo", "--json", "hi"],
    "chat --no-stream": ["chat", *LOCAL, "-m", "echo", "--no-stream", "hi"],
    "debug": ["debug", *LOCAL, "-m", "echo", "hi"],
    "raw": ["raw", *LOCAL, "-X", "GET", "--path", "/models"],
    "raw --events": ["raw", *LOCAL, "--events", "-"],
    "models": ["models", *LOCAL],
    "replay": ["replay", "RECORDING"],
    "serve": ["serve", "--port", "0"],
    "completion": ["completion", "bash"],
}
RAW_BODY = b'{"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": true}'


def writer(name: str, recording: Path) -> list[str]:
    return [str(recording) if a == "RECORDING" else a for a in WRITERS[name]]


@pytest.mark.parametrize("name", WRITERS)
def test_a_closed_stdout_is_exit_74_with_one_line_from_every_command(name, recording, tmp_path):
    result = shell(writer(name, recording), ">&-", input=RAW_BODY, env={"XDG_CACHE_HOME": str(tmp_path)})
    assert (result.returncode, result.stderr.decode()) == (74, f"assisters: error: {CLOSED_STDOUT}\n")


@needs_dev_full
@pytest.mark.parametrize("name", WRITERS)
def test_a_full_disk_on_stdout_is_exit_74_with_one_line_from_every_command(name, recording, tmp_path):
    result = shell(writer(name, recording), ">/dev/full", input=RAW_BODY,
                   env={"XDG_CACHE_HOME": str(tmp_path)})
    assert (result.returncode, result.stderr.decode()) == (74, f"assisters: error: {FULL_DISK}\n")


def test_shell_completion_with_a_closed_stdout_ends_quietly():
    result = shell([], ">&-", env={"_ASSISTERS_COMPLETE": "bash_complete", "COMP_WORDS": "assisters ch",
                                   "COMP_CWORD": "1"})
    assert (result.returncode, result.stderr) == (74, b"")


# ----------------------------------------------------------------- stderr


OUTCOMES = [
    ("success", ["chat", *LOCAL, "-m", "echo", "hi"], 0, b"hi"),
    ("success with usage on stderr", ["chat", *LOCAL, "-m", "echo", "-u", "hi"], 0, b"hi"),
    ("connection failure", ["chat", "--base-url", NO_SERVER, "--max-retries", "1",
                            "--max-retry-wait", "0.1", "hi"], 75, b""),
    ("usage error", ["chat", "--no-such-option"], 2, b""),
    ("usage error of the group", ["no-such-command"], 2, b""),
    ("a rejected request", ["raw", *LOCAL, "--path", "/nowhere", "-X", "GET"], 65, None),
]


@pytest.mark.parametrize("redirect", ["2>&-", "2>/dev/full"])
@pytest.mark.parametrize(("label", "args", "status", "stdout"), OUTCOMES, ids=[o[0] for o in OUTCOMES])
def test_stderr_that_cannot_be_written_never_changes_the_exit_status(redirect, label, args, status, stdout):
    if "full" in redirect and not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    result = shell(args, redirect, env={"ASSISTERS_API_KEY": SECRET})
    assert result.returncode == status
    if stdout is not None:
        assert result.stdout == stdout


def test_every_stream_closed_at_once_is_still_the_documented_status():
    result = shell(["chat", *LOCAL, "-m", "echo", "hi"], "<&- >&- 2>&-")
    assert result.returncode == 74


# ----------------------------------------------------------------- stdin


def test_a_closed_stdin_is_empty_input():
    result = shell(["chat", *LOCAL, "-m", "echo", "only", "args"], "<&-")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"only args", b"")


def test_a_closed_stdin_and_no_arguments_is_the_no_prompt_usage_error():
    result = shell(["chat", *LOCAL, "-m", "echo"], "<&-")
    assert result.returncode == 2
    assert result.stderr.decode().startswith("assisters chat: error: no prompt")


def test_raw_with_a_closed_stdin_reads_an_empty_body():
    result = shell(["raw", *LOCAL], "<&-")
    assert result.returncode == 65
    assert result.stderr.decode().startswith("assisters: error: stdin is not valid JSON")


def test_a_closed_stdout_does_not_let_a_later_file_take_its_number(tmp_path):
    """With fd 1 closed, the recording opened later must not become "stdout"."""
    save = tmp_path / "rec.jsonl"
    result = shell(["chat", *LOCAL, "-m", "echo", "--save", str(save), "hi"], ">&-")
    assert result.returncode == 74
    lines = save.read_bytes().splitlines()
    assert b'"type":"request"' in lines[0]
    assert all(line.startswith(b"{") for line in lines)  # no answer text written into the file


FULL_PIPE = 60_000  # of Linux's 65,536: the next page-sized write would not fit


def _set_nonblocking(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


def _pipe_fill(fd: int) -> int:
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)


def test_a_nonblocking_stdout_loses_nothing_beyond_the_pipe_buffer():
    """The reader waits until the pipe is full (the writer meets EAGAIN), then reads."""
    prompt = " ".join(f"w{i}" for i in range(50_000)).encode()  # 339 KB: five pipe buffers
    reader, writer_fd = os.pipe()
    _set_nonblocking(writer_fd)
    process = subprocess.Popen(cli_command("chat", *LOCAL, "-m", "echo"), stdin=subprocess.PIPE,
                               stdout=writer_fd, stderr=subprocess.PIPE)
    os.close(writer_fd)
    assert process.stdin is not None and process.stderr is not None
    process.stdin.write(prompt)
    process.stdin.close()
    deadline = time.monotonic() + 30
    while _pipe_fill(reader) < FULL_PIPE and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _pipe_fill(reader) >= FULL_PIPE or process.poll() is not None
    time.sleep(0.5)  # the writer meets the full pipe, again and again, before anything is read
    received = bytearray()
    while data := os.read(reader, 65536):
        received += data
    os.close(reader)
    stderr = process.stderr.read()
    process.stderr.close()
    assert (process.wait(timeout=30), stderr) == (0, b"")
    assert bytes(received) == prompt


def _waiting_in_poll(pid: int) -> bool:
    try:
        return "poll" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


def test_a_nonblocking_stdin_is_waited_for():
    reader, writer_fd = os.pipe()
    _set_nonblocking(reader)
    process = subprocess.Popen(cli_command("chat", *LOCAL, "-m", "echo"), stdin=reader,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(reader)
    deadline = time.monotonic() + 10  # the child waits on an empty stdin (or died, and the test fails)
    while not _waiting_in_poll(process.pid) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.write(writer_fd, b"late ")
    time.sleep(0.1)
    os.write(writer_fd, b"words")
    os.close(writer_fd)
    stdout, stderr = process.communicate(timeout=60)
    assert (process.returncode, stdout, stderr) == (0, b"late words", b"")
