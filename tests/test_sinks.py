"""``--json`` when the run fails: the object so far, marked incomplete, and the failure's status.

Text mode keeps the partial text on stdout; ``--json`` keeps the same text in the
one object it prints, with ``finish_reason`` null for the choice that was cut and
a top-level ``error`` member holding the exit status and the error line. Real
processes against real loopback servers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.conftest import SECRET, chunk, cli_command, run_cli, serve_stream, sse

PROMPT = "one two three four five six"


def env_for(server: ChatServer) -> dict[str, str]:
    return {"ASSISTERS_BASE_URL": server.base_url, "ASSISTERS_API_KEY": SECRET}


def one_object(stdout: bytes) -> dict:
    assert stdout.endswith(b"\n") and stdout.count(b"\n") == 1, stdout
    return orjson.loads(stdout)


def test_a_broken_stream_prints_the_object_so_far_with_its_error_and_exits_75():
    with ChatServer(ServeOptions(drop_after=2)) as server:
        result = run_cli("chat", "--json", "-m", "echo", PROMPT, env=env_for(server))
    assert result.returncode == 75
    [line] = result.stderr.decode().splitlines()
    completion = one_object(result.stdout)
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "echo"
    assert completion["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "one two"},
                                      "finish_reason": None}]
    assert completion["error"] == {"status": 75, "message": line.removeprefix("assisters: error: ")}
    assert completion["error"]["message"].startswith("the stream broke before the answer was complete")


def test_the_text_mode_and_json_mode_keep_the_same_partial_text():
    with ChatServer(ServeOptions(drop_after_bytes=700, drop_times=0)) as server:
        text = run_cli("chat", "-m", "echo", PROMPT, env=env_for(server))
        as_json = run_cli("chat", "--json", "-m", "echo", PROMPT, env=env_for(server))
    assert text.returncode == as_json.returncode == 75
    assert one_object(as_json.stdout)["choices"][0]["message"]["content"] == text.stdout.decode()


def test_an_error_inside_the_stream_keeps_its_status_and_the_text(httpserver, key_env):
    serve_stream(httpserver, sse(chunk("", role="assistant"), chunk("half"),
                                 'event: error\ndata: {"error": {"message": "overloaded"}}\n\n'))
    result = run_cli("chat", "--json", "hi", env=key_env)
    assert result.returncode == 69
    completion = one_object(result.stdout)
    assert completion["choices"][0]["message"]["content"] == "half"
    assert completion["choices"][0]["finish_reason"] is None
    assert completion["error"] == {"status": 69, "message": "overloaded"}


def test_after_resumes_the_object_holds_all_the_text_shown_and_the_summed_usage():
    options = ServeOptions(drop_after=2, drop_times=0)  # every stream is cut after two chunks
    with ChatServer(options) as server:
        text = run_cli("chat", "--resume", "--max-resumes", "1", "-m", "echo", PROMPT, env=env_for(server))
        result = run_cli("chat", "--json", "--resume", "--max-resumes", "1", "-m", "echo", PROMPT,
                         env=env_for(server))
    assert text.returncode == result.returncode == 75
    completion = one_object(result.stdout)
    assert completion["choices"][0]["message"]["content"] == text.stdout.decode() == "one two three four"
    assert completion["error"]["message"].endswith("(after 1 resumes)")


def test_nothing_is_printed_when_nothing_arrived(httpserver, key_env):
    serve_stream(httpserver, b'{"error": {"message": "down"}}', status=500, content_type="application/json")
    result = run_cli("chat", "--json", "--max-retries", "0", "hi", env=key_env)
    assert (result.returncode, result.stdout) == (69, b"")
    assert result.stderr == b"assisters: error: HTTP 500: down\n"


def _wait_for(path: Path, text: bytes, process: subprocess.Popen[bytes]) -> None:
    """Until ``text`` is in the recording and the client, having read it, sleeps again
    waiting for the network (the recording is written before a read is taken in)."""
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        if path.exists() and text in path.read_bytes() and _sleeping(process.pid) and _sleeping(process.pid):
            return
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never reached {path}")


def _sleeping(pid: int) -> bool:
    time.sleep(0.05)
    state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    return state == "S"


@pytest.mark.parametrize(("signum", "status", "message"), [(signal.SIGINT, 130, "interrupted"),
                                                         (signal.SIGTERM, 143, "terminated by SIGTERM")])
def test_ctrl_c_or_sigterm_prints_the_object_so_far_and_exits_130_or_143(tmp_path, signum, status, message):
    """The recording (flushed per read) says when the client has the first chunks."""
    save = tmp_path / "run.jsonl"
    with ChatServer(ServeOptions(stall_after=3, stall_seconds=60)) as server:
        process = subprocess.Popen(cli_command("chat", "--json", "--save", str(save), "-m", "echo", PROMPT),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env={**os.environ, **env_for(server)})
        _wait_for(save, b"three", process)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
    assert (process.returncode, stderr) == (status, b"")
    completion = one_object(stdout)
    assert completion["choices"][0] == {
        "index": 0, "message": {"role": "assistant", "content": "one two three"}, "finish_reason": None}
    assert completion["error"] == {"status": status, "message": message}


def test_replaying_a_broken_stream_as_json_prints_the_same_incomplete_object(tmp_path):
    save = tmp_path / "broken.jsonl"
    with ChatServer(ServeOptions(drop_after=2)) as server:
        live = run_cli("chat", "--json", "--no-store", "--save", str(save), "-m", "echo", PROMPT,
                       env=env_for(server))
    replayed = run_cli("replay", "--json", str(save))
    assert replayed.returncode == live.returncode == 75
    assert one_object(replayed.stdout) == one_object(live.stdout)
