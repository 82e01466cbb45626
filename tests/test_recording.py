"""Recordings end to end: ``--save`` on chat, debug and raw, then ``replay`` and ``serve --replay``.

Every command runs as a real process against a corpus case served over loopback.
A replay must reproduce what the live run showed (stdout bytes, exit status, the
error and warning lines), and the key must never reach the file.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.conftest import SECRET, SSE_CASES, case_body, cli_command, corpus_server, needs_corpus, run_cli

pytestmark = needs_corpus

# ok, error and truncated streams; statuses as in test_corpus.ERROR_STATUS.
CASES = {
    "lf-basic": 0,
    "gzip-encoded-sse": 0,
    "split-every-byte": 0,
    "done-missing-after-finish-reason": 0,  # ok, with a warning line
    "reasoning-content-deepseek": 0,
    "json-reply-to-stream-request": 0,
    "cut-midstream-abort": 75,
    "cut-inside-json-line": 75,
    "trailing-event-without-blank-line": 75,
    "event-error-midstream": 69,
    "http-429-retry-after": 75,
    "http-502-html": 69,
    "empty-200-body": 76,
}
TRUNCATED = ("cut-midstream-abort", "cut-inside-json-line")  # the connection breaks mid-body
REALTIME = ("lf-basic", "done-missing-after-finish-reason", "cut-midstream-abort", "http-429-retry-after")
RAW_BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'


# ----------------------------------------------------------------------------- helpers


def stored_body(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(line["b64"]) if "b64" in line else line["text"].encode()
                    for line in lines if line["type"] == "read")


def key_env(base_url: str) -> dict[str, str]:
    return {"ASSISTERS_BASE_URL": base_url, "ASSISTERS_API_KEY": SECRET}


def records(path: Path) -> list[dict[str, Any]]:
    """Every line of a recording, parsed (any line that is not JSON fails the test)."""
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def without_ms(stdout: bytes) -> list[dict[str, Any]]:
    """debug's JSON Lines with the timing field dropped."""
    lines = [json.loads(line) for line in stdout.splitlines()]
    for line in lines:
        line.pop("ms", None)
    return lines


def error_lines(stderr: bytes) -> list[str]:
    """The lines of stderr that say what went wrong (not debug's timing summary)."""
    return [line for line in stderr.decode().splitlines()
            if line.startswith("assisters: error") or "warning" in line.lower()]


def check_recording_shape(path: Path, truncated: bool) -> list[dict[str, Any]]:
    lines = records(path)
    assert lines[0]["type"] == "request"
    assert lines[0]["format"] == "assisters-recording"
    assert lines[0]["version"] == 1
    assert lines[1]["type"] == "response"
    assert lines[-1]["type"] == "end"
    middle = lines[2:-1]
    kinds = [line["type"] for line in middle]
    assert set(kinds) <= {"read", "error"}
    assert kinds.count("error") <= 1
    if "error" in kinds:
        assert kinds[-1] == "error"  # nothing is read after the transport broke
    ms = [line["ms"] for line in lines[1:]]
    assert ms == sorted(ms)
    assert all(isinstance(m, (int, float)) and m >= 0 for m in ms)
    for line in middle:
        if line["type"] == "read":
            assert ("text" in line) != ("b64" in line)
    headers = dict(lines[0]["headers"])
    assert headers["Authorization"] == "[REDACTED]"
    if truncated:  # the connection broke: the last thing before "end" is how
        assert kinds[-1] == "error"
        assert middle[-1]["status"] == 75
    return lines


@dataclass
class Run:
    status: int
    stdout: bytes
    stderr: bytes

    @classmethod
    def of(cls, result: subprocess.CompletedProcess[bytes]) -> Run:
        assert b"Traceback" not in result.stderr, result.stderr
        assert SECRET.encode() not in result.stdout + result.stderr
        return cls(result.returncode, result.stdout, result.stderr)


@dataclass
class CaseRuns:
    """Live runs with --save, and the replays of what they saved."""

    files: dict[str, Path]
    live: dict[str, Run]
    replayed: dict[str, Run]


def record_and_replay(name: str, folder: Path) -> CaseRuns:
    folder.mkdir()
    files = {mode: folder / f"{mode}.jsonl" for mode in ("chat", "debug", "raw")}
    with corpus_server(name) as base_url:
        env = key_env(base_url)
        live = {
            "chat": Run.of(run_cli("chat", "--save", str(files["chat"]), "hi", env=env)),
            "debug": Run.of(run_cli("debug", "--save", str(files["debug"]), "hi", env=env)),
            "raw": Run.of(run_cli("raw", "--save", str(files["raw"]), "-", input=RAW_BODY, env=env)),
        }
    replayed = {
        "chat": Run.of(run_cli("replay", str(files["chat"]))),
        "debug": Run.of(run_cli("replay", "--as", "debug", str(files["debug"]))),
        "raw": Run.of(run_cli("replay", "--as", "raw", str(files["raw"]))),
        "chat-as-debug": Run.of(run_cli("replay", "--as", "debug", str(files["chat"]))),
    }
    if name in REALTIME:
        replayed["chat-realtime"] = Run.of(run_cli("replay", "--realtime", str(files["chat"])))
    return CaseRuns(files, live, replayed)


@pytest.fixture(scope="module")
def corpus_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CaseRuns]:
    """Every case recorded and replayed once, a few cases at a time (the processes wait on I/O)."""
    root = tmp_path_factory.mktemp("recordings")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ASSISTERS_", "OPENAI_")) and k not in ("NO_COLOR", "FORCE_COLOR", "TERM")}
    # A replay shows one exchange: compare it with a live run that does not retry.
    env.update(XDG_CONFIG_HOME=str(root / "xdg"), HOME=str(root / "home"), ASSISTERS_MAX_RETRIES="0")
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # run_cli copies os.environ; the autouse fixture is function-scoped
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {name: pool.submit(record_and_replay, name, root / name) for name in CASES}
            return {name: future.result() for name, future in futures.items()}
    finally:
        os.environ.clear()
        os.environ.update(saved)


# ------------------------------------------------------------- replay == the live run


@pytest.mark.parametrize("name", list(CASES))
def test_chat_replay_reproduces_stdout_status_and_error_line(corpus_runs, name):
    runs = corpus_runs[name]
    live, replayed = runs.live["chat"], runs.replayed["chat"]
    assert live.status == CASES[name], live.stderr
    assert replayed.stdout == live.stdout
    assert replayed.status == live.status
    assert replayed.stderr == live.stderr  # the error line, or the warning lines, or nothing
    if CASES[name]:
        assert len(live.stderr.decode().splitlines()) == 1
        assert live.stderr.startswith(b"assisters: error: ")
    expected = json.loads((SSE_CASES / f"{name}.json").read_text(encoding="utf-8"))["expect"]
    assert live.stdout == expected["stdout"].encode()


def test_warning_lines_are_replayed_too(corpus_runs):
    runs = corpus_runs["done-missing-after-finish-reason"]
    assert b"warning" in runs.live["chat"].stderr
    assert runs.replayed["chat"].stderr == runs.live["chat"].stderr


@pytest.mark.parametrize("name", list(CASES))
def test_debug_replay_reproduces_events_and_status(corpus_runs, name):
    runs = corpus_runs[name]
    live, replayed = runs.live["debug"], runs.replayed["debug"]
    assert live.status == CASES[name], live.stderr
    assert replayed.status == live.status
    assert without_ms(replayed.stdout) == without_ms(live.stdout)
    assert error_lines(replayed.stderr) == error_lines(live.stderr)


@pytest.mark.parametrize("name", list(CASES))
def test_raw_replay_reproduces_the_body_bytes_and_status(corpus_runs, name):
    runs = corpus_runs[name]
    live, replayed = runs.live["raw"], runs.replayed["raw"]
    assert replayed.stdout == live.stdout
    assert replayed.status == live.status
    assert replayed.stderr == live.stderr
    if name in ("lf-basic", "split-every-byte", "gzip-encoded-sse", "http-502-html"):
        assert live.stdout == case_body(name)


@pytest.mark.parametrize("name", list(CASES))
def test_a_chat_recording_replays_as_debug(corpus_runs, name):
    """chat stops reading at [DONE]; the events up to there are the events debug saw."""
    runs = corpus_runs[name]
    as_debug, debug = runs.replayed["chat-as-debug"], runs.live["debug"]
    assert as_debug.status == runs.live["chat"].status
    assert without_ms(as_debug.stdout) == without_ms(debug.stdout)


@pytest.mark.parametrize("name", REALTIME)
def test_realtime_replay_gives_the_same_output(corpus_runs, name):
    runs = corpus_runs[name]
    realtime, live = runs.replayed["chat-realtime"], runs.live["chat"]
    assert (realtime.status, realtime.stdout, realtime.stderr) == (live.status, live.stdout, live.stderr)


# ------------------------------------------------------------------ the file itself


@pytest.mark.parametrize("name", list(CASES))
def test_recordings_are_json_lines_in_order_without_the_key(corpus_runs, name):
    runs = corpus_runs[name]
    for mode, path in runs.files.items():
        assert SECRET.encode() not in path.read_bytes(), mode
        lines = check_recording_shape(path, truncated=name in TRUNCATED)
        assert lines[0]["command"] == mode
        assert lines[0]["method"] == "POST"
        assert lines[0]["url"].endswith("/v1/chat/completions")
    chat = records(runs.files["chat"])
    assert json.loads(chat[0]["body"])["messages"] == [{"role": "user", "content": "hi"}]
    assert records(runs.files["raw"])[0]["body"] == RAW_BODY.decode()


def test_truncated_streams_record_an_error_line(corpus_runs):
    for name in TRUNCATED:
        for mode in ("chat", "debug", "raw"):
            lines = records(corpus_runs[name].files[mode])
            errors = [line for line in lines if line["type"] == "error"]
            assert len(errors) == 1, (name, mode)
            assert errors[0]["status"] == 75
            assert "broke" in errors[0]["message"]
            assert [line["type"] for line in lines[-2:]] == ["error", "end"]
    clean = records(corpus_runs["lf-basic"].files["debug"])
    assert not [line for line in clean if line["type"] == "error"]


def test_reads_are_the_body_as_received(corpus_runs):
    """Transfer framing removed, content encoding kept: the gzip case is stored as base64."""
    for mode in ("chat", "debug", "raw"):
        lines = records(corpus_runs["gzip-encoded-sse"].files[mode])
        assert stored_body(lines) == case_body("gzip-encoded-sse"), mode
        assert dict(lines[1]["headers"])["Content-Encoding"] == "gzip"
        assert any("b64" in line for line in lines if line["type"] == "read")
    for name in ("split-every-byte", "lf-basic", "cut-midstream-abort"):
        for mode in ("debug", "raw"):  # chat stops at [DONE]; debug and raw read everything
            assert stored_body(records(corpus_runs[name].files[mode])) == case_body(name), (name, mode)


def test_key_given_with_api_key_flag_is_not_recorded(tmp_path):
    path = tmp_path / "rec.jsonl"
    with corpus_server("lf-basic") as base_url:
        for command in ("chat", "debug"):
            result = run_cli(command, "--base-url", base_url, "--api-key", SECRET, "--save", str(path), "hi")
            assert result.returncode == 0, result.stderr
            data = path.read_bytes()
            assert SECRET.encode() not in data
            assert dict(records(path)[0]["headers"])["Authorization"] == "[REDACTED]"


@pytest.mark.parametrize("header", ["X-Api-Key", "Authorization", "api-key"])
def test_key_in_a_custom_raw_header_is_not_recorded(tmp_path, header):
    """No ASSISTERS key at all (loopback): the header name alone must get it redacted."""
    path = tmp_path / "rec.jsonl"
    value = SECRET if header != "Authorization" else f"Bearer {SECRET}"
    with corpus_server("lf-basic") as base_url:
        result = run_cli("raw", "--base-url", base_url, "-H", f"{header}: {value}", "--save", str(path),
                         "-", input=RAW_BODY)
    assert result.returncode == 0, result.stderr
    assert SECRET.encode() not in path.read_bytes()
    sent = [v for k, v in records(path)[0]["headers"] if k.lower() == header.lower()]
    assert sent == ["[REDACTED]"]


def test_key_echoed_back_by_the_server_is_scrubbed_from_the_reads(tmp_path):
    path = tmp_path / "rec.jsonl"
    with ChatServer(ServeOptions(tokens_per_second=0)) as server:
        result = run_cli("chat", "-m", "echo", "--save", str(path), f"my key is {SECRET} ok",
                         env=key_env(server.base_url))
    assert result.returncode == 0
    assert SECRET.encode() not in path.read_bytes()
    assert any(line["type"] == "read" for line in records(path))


def test_credentials_in_the_base_url_are_refused_before_anything_is_recorded(tmp_path):
    """user:password@ would replace the key with Basic auth: exit 78, nothing sent or written."""
    path = tmp_path / "rec.jsonl"
    with ChatServer(ServeOptions(tokens_per_second=0)) as server:
        base_url = server.base_url.replace("http://", f"http://user:{SECRET}@")
        result = run_cli("chat", "-m", "echo", "--base-url", base_url, "--save", str(path), "hi")
        assert server.state.requests_seen == 0
    assert result.returncode == 78, result.stderr
    assert b"user:password@" in result.stderr and SECRET.encode() not in result.stderr
    assert not path.exists()


# ------------------------------------------------------------- written as it happens


def interrupted_chat(path: Path) -> tuple[int, bytes, bytes, list[dict[str, Any]]]:
    """chat --save a long answer, Ctrl-C it after the first text; (status, stdout, stderr, early lines)."""
    with ChatServer(ServeOptions(tokens_per_second=50)) as server:
        env = {**os.environ, **key_env(server.base_url)}
        chat = subprocess.Popen(
            cli_command("chat", "-m", "lorem", "--max-tokens", "100000", "--save", str(path), "hi"),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        try:
            assert chat.stdout is not None
            first = os.read(chat.stdout.fileno(), 64)
            assert first
            # The process is still streaming; the file already holds what arrived.
            assert chat.poll() is None
            complete = path.read_bytes().rpartition(b"\n")[0].splitlines()
            early = [json.loads(line) for line in complete]
            chat.send_signal(signal.SIGINT)
            rest, stderr = chat.communicate(timeout=30)
        finally:
            if chat.poll() is None:
                chat.kill()
                chat.communicate()
    return chat.returncode, first + rest, stderr, early


def test_recording_is_written_incrementally_and_survives_ctrl_c(tmp_path):
    path = tmp_path / "rec.jsonl"
    status, stdout, stderr, early = interrupted_chat(path)
    assert [line["type"] for line in early[:2]] == ["request", "response"]
    assert any(line["type"] == "read" for line in early[2:])
    assert not any(line["type"] == "end" for line in early)
    assert status == 130
    assert b"Traceback" not in stderr
    lines = records(path)  # every line is JSON
    reads = [line for line in lines if line["type"] == "read"]
    assert reads
    assert len(reads) >= len([line for line in early if line["type"] == "read"])
    assert lines[0]["type"] == "request"
    assert SECRET.encode() not in path.read_bytes()
    # What was printed is what was recorded (a read may be recorded but not yet shown).
    replay = run_cli("replay", str(path))
    assert b"Traceback" not in replay.stderr
    assert replay.stdout.startswith(stdout)


def test_replay_of_an_interrupted_chat_keeps_its_exit_status(tmp_path):
    path = tmp_path / "rec.jsonl"
    status, _, _, _ = interrupted_chat(path)
    assert status == 130
    replay = run_cli("replay", str(path))
    assert replay.returncode == status, replay.stderr


# ----------------------------------------------------------------------- replay errors


@pytest.mark.parametrize("content", [
    b"hello\nworld\n",
    b"just one line of text",
    b"",
    b'{"a": 1}\n',
    b'{"type": "request", "format": "something-else", "version": 1}\n',
    b"\xff\xfe\x00\x01 binary",
    b"data: [DONE]\n\n",
], ids=["text", "one-line", "empty", "json-object", "other-format", "binary", "sse"])
def test_a_file_that_is_not_a_recording_is_exit_65(tmp_path, content):
    path = tmp_path / "not-a-recording.jsonl"
    path.write_bytes(content)
    renders = ("chat", "debug", "raw") if content.startswith(b"hello") else ("chat",)
    for render in renders:
        result = run_cli("replay", "--as", render, str(path))
        assert result.returncode == 65, (render, result.stderr)
        assert result.stdout == b""
        assert len(result.stderr.splitlines()) == 1
        assert result.stderr.startswith(b"assisters: error: ")
        assert b"Traceback" not in result.stderr


@pytest.mark.parametrize("content", [b"[1, 2, 3]\n", b'"text"\n', b"42\n"],
                         ids=["array", "string", "number"])
def test_a_json_file_that_is_not_an_object_is_exit_65(tmp_path, content):
    path = tmp_path / "data.json"
    path.write_bytes(content)
    result = run_cli("replay", str(path))
    assert result.returncode == 65, result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("second", [b'{"type": "response"}', b"[1]"], ids=["no-status", "array"])
def test_a_damaged_recording_is_exit_65(tmp_path, second):
    path = tmp_path / "damaged.jsonl"
    path.write_bytes(b'{"type": "request", "format": "assisters-recording", "version": 1}\n'
                     + second + b"\n")
    result = run_cli("replay", str(path))
    assert result.returncode == 65, result.stderr
    assert len(result.stderr.splitlines()) == 1


REQUEST_LINE = b'{"type": "request", "format": "assisters-recording", "version": 1}\n'
RESPONSE_LINE = (b'{"type": "response", "ms": 1, "status": 200, "reason": "OK", '
                 b'"headers": [["content-type", "text/event-stream"]]}\n')
HAND_EDITED = {
    "text is a number": b'{"type": "read", "ms": 2, "text": 123}',
    "b64 is not base64": b'{"type": "read", "ms": 2, "b64": "not base64!"}',
    "ms is huge": b'{"type": "read", "ms": 1e300, "text": "data: [DONE]\\n\\n"}',
    "ms is negative": b'{"type": "read", "ms": -5, "text": "x"}',
    "ms is a string": b'{"type": "end", "ms": "soon"}',
    "status is text": b'{"type": "response", "status": "200"}',
    "status is a bool": b'{"type": "response", "status": true}',
    "status out of range": b'{"type": "response", "status": 1000}',
    "null header name": b'{"type": "response", "status": 200, "headers": [[null, "x"]]}',
    "header value with a newline": b'{"type": "response", "status": 200, "headers": [["x", "a\\r\\nb: c"]]}',
    "header pair of three": b'{"type": "response", "status": 200, "headers": [["a", "b", "c"]]}',
    "headers not a list": b'{"type": "response", "status": 200, "headers": {"a": "b"}}',
    "error status unknown": b'{"type": "error", "ms": 3, "message": "x", "status": 4}',
    "error message a list": b'{"type": "error", "ms": 3, "message": ["x"], "status": 75}',
    "type not a string": b'{"type": 7}',
    "request url a number": None,  # the first line itself
}


@pytest.mark.parametrize("case", list(HAND_EDITED))
def test_a_hand_edited_recording_with_a_wrong_type_is_exit_65_naming_the_line(tmp_path, case):
    """Every render and serve --replay refuse it with one line, before any output."""
    path = tmp_path / "edited.jsonl"
    if HAND_EDITED[case] is None:
        path.write_bytes(b'{"type": "request", "format": "assisters-recording", "url": 5}\n' + RESPONSE_LINE)
        number = 1
    else:
        path.write_bytes(REQUEST_LINE + RESPONSE_LINE + HAND_EDITED[case] + b"\n")
        number = 3
    renders = (["replay"], ["replay", "--realtime"], ["replay", "--as", "debug"], ["replay", "--as", "raw"])
    for args in renders:
        result = run_cli(*args, str(path))
        assert result.returncode == 65, (args, result.stderr)
        assert result.stdout == b""
        line, = result.stderr.decode().splitlines()
        assert line.startswith(f"assisters: error: {path}:{number}: damaged recording: "), line
    served = run_cli("serve", "--port", "0", "--replay", str(path), timeout=30)
    assert served.returncode == 65, served.stderr
    assert served.stdout == b""
    assert len(served.stderr.splitlines()) == 1


def test_an_unknown_line_type_is_skipped(tmp_path):
    """A newer kind of line does not stop an older replay."""
    path = tmp_path / "newer.jsonl"
    path.write_bytes(REQUEST_LINE + RESPONSE_LINE + b'{"type": "annotation", "note": [1]}\n'
                     + b'{"type": "read", "ms": 2, "text": "data: {\\"choices\\": [{\\"index\\": 0, '
                     + b'\\"delta\\": {\\"content\\": \\"hi\\"}, \\"finish_reason\\": \\"stop\\"}]}\\n\\n'
                     + b'data: [DONE]\\n\\n"}\n')
    result = run_cli("replay", str(path))
    assert (result.returncode, result.stdout) == (0, b"hi"), result.stderr


def test_a_missing_file_is_a_usage_error(tmp_path):
    result = run_cli("replay", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr


def test_a_recording_cut_by_a_crash_still_replays(corpus_runs, tmp_path):
    """A last line cut short (the process died mid-write) is ignored, the rest replays."""
    full = corpus_runs["lf-basic"].files["chat"].read_bytes()
    lines = full.splitlines(keepends=True)
    cut = b"".join(lines[:-2]) + lines[-2][: len(lines[-2]) // 2]  # half a read, no end line
    path = tmp_path / "cut.jsonl"
    path.write_bytes(cut)
    result = run_cli("replay", str(path))
    assert b"Traceback" not in result.stderr
    assert result.stdout == corpus_runs["lf-basic"].live["chat"].stdout[: len(result.stdout)]


def test_realtime_replay_takes_at_least_the_recorded_time(tmp_path):
    """Only a lower bound, never an upper one."""
    path = tmp_path / "rec.jsonl"
    options = ServeOptions(tokens_per_second=0, first_token_delay_ms=300)
    with ChatServer(options) as server:
        result = run_cli("chat", "-m", "echo", "--save", str(path), "slow start",
                         env=key_env(server.base_url))
    assert result.returncode == 0
    last_read = max(line["ms"] for line in records(path) if line["type"] == "read")
    assert last_read >= 300
    started = time.monotonic()
    replay = run_cli("replay", "--realtime", str(path))
    elapsed = time.monotonic() - started
    assert (replay.returncode, replay.stdout) == (0, b"slow start")
    assert elapsed >= last_read / 1000


# ------------------------------------------------------------------------ serve --replay


SERVED = ["lf-basic", "gzip-encoded-sse", "done-missing-after-finish-reason",
          "json-reply-to-stream-request", "cut-midstream-abort", "event-error-midstream",
          "http-429-retry-after", "empty-200-body"]


@pytest.mark.parametrize("name", SERVED)
def test_serve_replay_gives_chat_the_same_answer(corpus_runs, name):
    runs = corpus_runs[name]
    live = runs.live["chat"]
    with ChatServer(ServeOptions(replay=runs.files["chat"])) as server:
        again = run_cli("chat", "--max-retries=0", "hi", env=key_env(server.base_url))
    assert b"Traceback" not in again.stderr
    assert again.stdout == live.stdout
    assert again.returncode == live.status
    if "broke" not in live.stderr.decode():  # a transport error names the (other) port
        assert again.stderr == live.stderr


def test_serve_replay_from_the_command_line(corpus_runs):
    runs = corpus_runs["lf-basic"]
    server = subprocess.Popen(
        cli_command("serve", "--port", "0", "--replay", str(runs.files["chat"])),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().decode().strip()
        first = run_cli("chat", "hi", env=key_env(base_url))
        second = run_cli("chat", "hi", env=key_env(base_url))  # every request gets the recording
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0
    assert b"Traceback" not in stderr
    assert first.stdout == second.stdout == runs.live["chat"].stdout
    assert first.returncode == second.returncode == 0
