"""``assisters serve`` as a real process, with ``assisters chat`` as its client.

Each fault flag is observed the way a user would meet it: through chat's stdout,
stderr and exit status. The server is stopped with Ctrl-C (SIGINT) and must exit 0
without a traceback. No timing is asserted beyond "it completed".
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from assisters.server.models import LOREM_DEFAULT_TOKENS
from tests.conftest import SECRET, cli_command, run_cli

ECHO = ["-m", "echo", "one two three four"]


@dataclass
class Served:
    base_url: str
    stdout: bytes = b""
    stderr: bytes = b""
    status: int | None = None


@contextmanager
def serving(*flags: str) -> Iterator[Served]:
    """``assisters serve --port 0 FLAGS``; yields its base URL, then stops it with Ctrl-C."""
    server = subprocess.Popen(cli_command("serve", "--port", "0", *flags), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert server.stdout is not None
    first_line = server.stdout.readline()
    served = Served(first_line.decode().strip())
    try:
        assert served.base_url.startswith("http://127.0.0.1:"), served.base_url
        assert served.base_url.endswith("/v1")
        yield served
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
        try:
            rest, served.stderr = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
            raise
        served.stdout = first_line + rest
        served.status = server.returncode
    assert served.status == 0, served.stderr
    assert b"Traceback" not in served.stderr, served.stderr
    assert served.stdout == first_line  # the URL is all it prints


def chat(served: Served, *args: str, key: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = {"ASSISTERS_BASE_URL": served.base_url}
    if key:
        env["ASSISTERS_API_KEY"] = SECRET
    result = run_cli("chat", *args, env=env)
    assert b"Traceback" not in result.stderr, result.stderr
    assert SECRET.encode() not in result.stdout + result.stderr
    return result


# ------------------------------------------------------------------------------ models


@pytest.mark.parametrize("prompt", [
    "hello",
    "héllo  wörld\n\n\ttabs 🎉 emoji",
    "  leading and trailing  ",
    "line one\r\nline two\u2028sep",
])
def test_echo_prints_the_prompt_back_byte_exact(prompt):
    with serving("--tokens-per-second", "0") as served:
        result = chat(served, "-m", "echo", prompt)
    assert result.returncode == 0, result.stderr
    assert result.stdout == prompt.encode()
    assert result.stderr == b""


def test_lorem_at_the_token_limit_warns_and_exits_0():
    with serving("--tokens-per-second", "0") as served:
        result = chat(served, "-m", "lorem", "--max-tokens", "5", "hi")
        json_result = chat(served, "-m", "lorem", "--max-tokens", "5", "--json", "hi")
    assert result.returncode == 0
    assert len(result.stdout.split()) == 5
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1
    assert "warning" in lines[0]
    assert "length" in lines[0]
    assert json_result.returncode == 0
    assert b'"finish_reason":"length"' in json_result.stdout.replace(b" ", b"")


def test_no_key_is_needed_on_loopback():
    with serving("--tokens-per-second", "0") as served:
        result = chat(served, *ECHO, key=False)
    assert (result.returncode, result.stdout) == (0, b"one two three four")


# ------------------------------------------------------------------------------ faults


def test_fail_status_503_always():
    with serving("--fail-status", "503", "--fail-times", "0") as served:
        first = chat(served, "--max-retries=0", *ECHO)
        second = chat(served, "--max-retries=0", *ECHO)
    for result in (first, second):
        assert result.returncode == 69
        assert result.stdout == b""
        lines = result.stderr.decode().splitlines()
        assert len(lines) == 1
        assert "HTTP 503" in lines[0]
        assert "Injected failure" in lines[0]


def test_fail_status_429_with_retry_after():
    with serving("--fail-status", "429", "--retry-after", "1") as served:
        result = chat(served, "--max-retries=0", *ECHO)
    assert result.returncode == 75
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert "HTTP 429" in stderr
    assert "retry after 1" in stderr
    assert len(stderr.splitlines()) == 1


@pytest.mark.parametrize(("status", "exit_status"), [("401", 77), ("403", 77), ("400", 65),
                                                     ("404", 65), ("500", 69)])
def test_fail_status_maps_to_the_documented_exit_status(status, exit_status):
    with serving("--fail-status", status) as served:
        result = chat(served, "--max-retries=0", *ECHO)
    assert result.returncode == exit_status, result.stderr
    assert result.stdout == b""
    assert f"HTTP {status}".encode() in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_fail_times_1_fails_once_then_succeeds():
    with serving("--fail-status", "503", "--fail-times", "1") as served:
        first = chat(served, "--max-retries=0", *ECHO)
        second = chat(served, *ECHO)
    assert first.returncode == 69
    assert b"HTTP 503" in first.stderr
    assert (second.returncode, second.stdout, second.stderr) == (0, b"one two three four", b"")


def test_drop_after_keeps_the_first_tokens_and_exits_75():
    with serving("--drop-after", "2") as served:
        result = chat(served, *ECHO)
    assert result.returncode == 75
    assert result.stdout == b"one two"
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("assisters: error: ")


def test_malformed_chunk_is_exit_76_with_the_text_around_it():
    with serving("--malformed-at", "2") as served:
        result = chat(served, *ECHO)
    assert result.returncode == 76
    assert result.stdout == b"one three four"  # chunk 2 (" two") was not JSON
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1
    assert "not JSON" in lines[0]


def test_stall_longer_than_the_read_timeout_is_exit_75():
    with serving("--stall-after", "1", "--stall-seconds", "2") as served:
        result = chat(served, "--timeout", "0.5", *ECHO)
    assert result.returncode == 75
    assert result.stdout == b"one"
    assert b"(idle timeout)" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_stall_without_a_short_timeout_completes():
    with serving("--stall-after", "1", "--stall-seconds", "2") as served:
        result = chat(served, *ECHO)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"one two three four", b"")


def test_first_token_delay_completes():
    with serving("--first-token-delay-ms", "300") as served:
        result = chat(served, *ECHO)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"one two three four", b"")


# ------------------------------------------------------------------ --base-url local


def test_base_url_local_needs_no_key_and_no_server():
    result = run_cli("chat", "--base-url", "local", "--max-tokens", "8", "hi")
    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr
    words = result.stdout.decode().split()
    assert len(words) == 8
    assert words[0][0].isupper()  # lorem text starts a sentence
    assert b"warning" in result.stderr  # 8 tokens is the limit: finish_reason length


def test_base_url_local_default_answer():
    result = run_cli("chat", "--base-url", "local", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""  # a complete answer (finish_reason stop): no warning
    assert len(result.stdout.split()) == LOREM_DEFAULT_TOKENS
    assert not result.stdout.endswith(b"\n")  # stdout is a pipe


def test_base_url_local_echo():
    result = run_cli("chat", "--base-url", "local", "-m", "echo", "x y")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"x y", b"")


def test_base_url_local_ignores_a_key_in_the_environment():
    result = run_cli("chat", "--base-url", "local", "-m", "echo", "x y",
                     env={"ASSISTERS_API_KEY": SECRET})
    assert (result.returncode, result.stdout) == (0, b"x y")
    assert SECRET.encode() not in result.stderr


# -------------------------------------------------------------------------- serve -v


def test_verbose_logs_one_line_per_request_and_never_the_key():
    with serving("-v", "--tokens-per-second", "0") as served:
        ok = chat(served, *ECHO)
        missing = chat(served, "-m", "no-such-model", "hi")
        models = run_cli("raw", "-X", "GET", "--path", "/models", "-H", f"X-Api-Key: {SECRET}",
                         env={"ASSISTERS_BASE_URL": served.base_url, "ASSISTERS_API_KEY": SECRET})
    assert ok.returncode == 0
    assert missing.returncode == 65
    assert models.returncode == 0
    log = served.stderr.decode()
    assert log.splitlines() == [
        "POST /v1/chat/completions 200",
        "POST /v1/chat/completions 404",
        "GET /v1/models 200",
    ]
    assert SECRET not in log
    assert "authorization" not in log.lower()
    assert "bearer" not in log.lower()


def test_without_verbose_the_server_is_silent():
    with serving("--tokens-per-second", "0") as served:
        chat(served, *ECHO)
        chat(served, "-m", "no-such-model", "hi")
    assert served.stderr == b""


@pytest.mark.parametrize("option", [
    ["--stall-seconds", "inf"], ["--first-token-delay-ms", "1e300"], ["--tokens-per-second", "1e-300"],
    ["--retry-after", "inf"], ["--head-delay", "nan"], ["--drip-ms", "nan"], ["--stall-seconds", "nan"],
], ids=" ".join)
def test_serve_refuses_a_number_the_handler_cannot_wait_for_at_start_up(option):
    """These once started and then crashed every request handler."""
    result = run_cli("serve", "--port", "0", *option, timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stdout == b""
    line, = result.stderr.decode().splitlines()
    assert option[0] in line and "Traceback" not in line


def test_serve_host_that_is_not_utf8_is_a_usage_error():
    result = run_cli("serve", "--port", "0", "--host", os.fsdecode(b"\xff"), timeout=30)
    assert result.returncode == 2, result.stderr
    assert b"'--host'" in result.stderr and len(result.stderr.splitlines()) == 1


def test_base_url_local_honours_stop_sequences():
    result = run_cli("chat", "--base-url", "local", "-m", "echo", "--stop", "wor", "--stop", "zz", "--json",
                     "hello world")
    assert result.returncode == 0, result.stderr
    choice = json.loads(result.stdout)["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("hello ", "stop")
    plain = run_cli("chat", "--base-url", "local", "-m", "echo", "--stop", "wor", "hello world")
    assert (plain.returncode, plain.stdout, plain.stderr) == (0, b"hello ", b"")


def test_serve_rejects_a_missing_replay_file(tmp_path):
    result = run_cli("serve", "--port", "0", "--replay", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr


def test_ctrl_c_during_a_stream_still_exits_0():
    """The server is stopped while a client is in the middle of a long answer."""
    with serving("--tokens-per-second", "20") as served:
        env = {**os.environ, "ASSISTERS_BASE_URL": served.base_url, "ASSISTERS_API_KEY": SECRET}
        client = subprocess.Popen(cli_command("chat", "-m", "lorem", "--max-tokens", "100000", "hi"),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env)
        assert client.stdout is not None
        assert os.read(client.stdout.fileno(), 16)
    # serving() asserted exit 0 and no traceback; the client sees a cut stream.
    _, stderr = client.communicate(timeout=30)
    assert client.returncode == 75
    assert b"Traceback" not in stderr


def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), timeout=30)
    assert result.returncode not in (0, 1), result.stderr
    assert b"internal error" not in result.stderr
    assert b"in use" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_serve_replay_of_a_damaged_recording_has_no_traceback(tmp_path):
    path = tmp_path / "damaged.jsonl"
    path.write_bytes(b'{"type":"request","format":"assisters-recording","version":1}\n'
                     b"not json\n"
                     b'{"type":"end","ms":1}\n')
    server = subprocess.Popen(cli_command("serve", "--port", "0", "--replay", str(path)),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert server.stdout is not None
    base_url = server.stdout.readline().decode().strip()
    result = None
    if base_url:  # it started: a request must get an answer, not a reset
        result = run_cli("chat", "hi", env={"ASSISTERS_BASE_URL": base_url})
        server.send_signal(signal.SIGINT)
    _, stderr = server.communicate(timeout=30)
    assert b"Traceback" not in stderr, stderr
    if result is None:  # refused at startup: one line, a usage-type status
        assert server.returncode == 65
        assert len(stderr.splitlines()) == 1
    else:
        assert server.returncode == 0
        assert b"Server disconnected" not in result.stderr, result.stderr


# ------------------------------------------------------------ resume against a cut


RESUME_PROMPT = "naïve café 日本語 text,  two  spaces"


def _byte_inside_a_multibyte_character() -> str:
    """An offset one byte into "日" of the echo stream of RESUME_PROMPT (ids have a fixed length)."""
    import httpx

    from assisters.server.app import ChatServer
    from assisters.server.options import ServeOptions

    body = {"model": "echo", "messages": [{"role": "user", "content": RESUME_PROMPT}], "stream": True}
    with ChatServer(ServeOptions()) as server, httpx.Client(timeout=10) as client:
        raw = client.post(f"{server.base_url}/chat/completions", json=body).content
    return str(raw.index("日".encode()) + 1)


@pytest.mark.parametrize("flags", [
    ["--drop-after", "0"],
    ["--drop-after", "1"],
    ["--drop-after", "3"],
    ["--drop-after", "6"],  # every token got through: only the finish is missing
    ["--drop-after-bytes", "inside"],
    ["--drop-after", "2", "--reset"],
    ["--drop-after", "2", "--echo-prefix"],
], ids=["0", "1", "3", "6", "mid-character", "reset", "echo-prefix"])
def test_resume_prints_the_uninterrupted_answer(flags):
    flags = [_byte_inside_a_multibyte_character() if f == "inside" else f for f in flags]
    with serving("--tokens-per-second", "0", *flags) as served:
        result = chat(served, "--resume", "-m", "echo", RESUME_PROMPT)
        cut = chat(served, "--no-resume", "-m", "echo", RESUME_PROMPT)  # drop-times 1: not cut
    assert result.returncode == 0, result.stderr
    assert result.stdout == RESUME_PROMPT.encode()
    assert (cut.returncode, cut.stdout) == (0, RESUME_PROMPT.encode())


def test_resume_of_lorem_prints_the_uninterrupted_answer():
    with serving("--tokens-per-second", "0") as served:
        whole = chat(served, "-m", "lorem", "--seed", "5", "hi")
    with serving("--tokens-per-second", "0", "--drop-after", "9") as served:
        result = chat(served, "--resume", "-m", "lorem", "--seed", "5", "hi")
    assert (whole.returncode, result.returncode) == (0, 0), result.stderr
    assert result.stdout == whole.stdout


def test_drop_times_cuts_the_first_k_streams():
    with serving("--drop-after", "1", "--drop-times", "2") as served:
        results = [chat(served, "--no-resume", *ECHO) for _ in range(3)]
    assert [(r.returncode, r.stdout) for r in results] == [
        (75, b"one"), (75, b"one"), (0, b"one two three four")]


def test_head_delay_and_drip_still_complete():
    with serving("--head-delay", "0.3", "--drip-ms", "0.2") as served:
        result = chat(served, "-m", "echo", "a b")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"a b", b"")


def test_batch_api_flags_reach_the_server():
    import httpx

    line = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "echo"}}\n'
    flags = ("--batch-delay", "600", "--max-upload-bytes", str(len(line)), "--api-fail-status", "503")
    with serving(*flags) as served, httpx.Client(timeout=10) as client:
        assert client.get(f"{served.base_url}/files").status_code == 503  # the first API request only
        upload = client.post(f"{served.base_url}/files", data={"purpose": "batch"},
                             files={"file": ("in.jsonl", line + b"\n")})
        assert upload.status_code == 400 and "File is too large" in upload.text
        file_id = client.post(f"{served.base_url}/files", data={"purpose": "batch"},
                              files={"file": ("in.jsonl", line)}).json()["id"]
        batch = client.post(f"{served.base_url}/batches", json={
            "input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"})
        assert client.get(f"{served.base_url}/batches/{batch.json()['id']}").json()["status"] == "validating"
    with serving("--no-batch-api") as served:
        assert httpx.get(f"{served.base_url}/batches").status_code == 404
