"""Shared fixtures: a clean environment, the CLI as a real process, SSE bodies."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import orjson
import pytest

SECRET = "sk-test-SECRET-4c1e-never-print-9f8e"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SSE_CASES = SHARED / "sse-cases"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's keys, config or colour preferences."""
    for name in list(os.environ):
        if name.startswith(("ASSISTERS_", "OPENAI_")) or name in ("NO_COLOR", "FORCE_COLOR", "TERM"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))  # the conversation store
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))  # the input history
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    yield


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "assisters", *args]


def run_cli(
    *args: str,
    input: bytes = b"",
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``assisters ARGS`` as a real process with pipes (not terminals)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        cli_command(*args), input=input, capture_output=True, env=full_env, timeout=timeout
    )


# Spawns the command with posix_spawn (so its peak RSS starts from this small
# process, not from pytest's) and prints "status peak-kilobytes".
SPAWNER = """
import os, sys
out, err, *command = sys.argv[1:]
actions = [(os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
           (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
           (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
pid = os.posix_spawn(command[0], command, os.environ, file_actions=actions)
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def run_measured(tmp_path: Path, *args: str, env: dict[str, str]) -> tuple[int, bytes, bytes, float]:
    """Run ``assisters ARGS``; returns (status, stdout, stderr, peak RSS in MB): the
    CLI's own peak, measured by ``os.wait4`` in a small spawner (Linux only)."""
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    report = subprocess.run([sys.executable, "-c", SPAWNER, str(out), str(err), *cli_command(*args)],
                            capture_output=True, env={**os.environ, **env}, timeout=120, check=True)
    status, peak_kb = report.stdout.split()
    assert sys.platform.startswith("linux")  # ru_maxrss in kilobytes
    return int(status), out.read_bytes(), err.read_bytes(), int(peak_kb) / 1024


def wait_until(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    """Poll a fact (server side, or on a screen); the deadline only guards against a hang."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def chunk(
    content: str | None = None,
    *,
    finish: str | None = None,
    index: int = 0,
    usage: dict[str, int] | None = None,
    **delta: Any,
) -> dict[str, Any]:
    """One chat.completion.chunk object."""
    if content is not None:
        delta["content"] = content
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1731000000,
        "model": "test-model",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def sse(*events: dict[str, Any] | str, done: bool = True) -> bytes:
    """An SSE body: each dict as a data event, each str as raw lines."""
    parts = [
        e.encode() if isinstance(e, str) else b"data: " + orjson.dumps(e) + b"\n\n" for e in events
    ]
    if done:
        parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def text_stream(*pieces: str, finish: str = "stop", usage: dict[str, int] | None = None) -> bytes:
    events: list[dict[str, Any]] = [chunk("", role="assistant")]
    events += [chunk(p) for p in pieces]
    events.append(chunk(finish=finish))
    if usage:
        events.append({"id": "chatcmpl-test", "object": "chat.completion.chunk", "choices": [],
                       "usage": usage})
    return sse(*events)


@pytest.fixture
def base_url(httpserver: Any) -> str:
    return httpserver.url_for("/v1")


@pytest.fixture
def key_env(base_url: str) -> dict[str, str]:
    return {"ASSISTERS_BASE_URL": base_url, "ASSISTERS_API_KEY": SECRET}


needs_corpus = pytest.mark.skipif(
    not (SSE_CASES / "serve_case.py").is_file(),
    reason=f"the shared SSE corpus is not at {SSE_CASES} (it lives in ../shared beside the project)",
)


def load_case(name: str) -> dict[str, Any]:
    return json.loads((SSE_CASES / f"{name}.json").read_text(encoding="utf-8"))


def case_body(name: str) -> bytes:
    """The body bytes a corpus case sends (transfer framing removed)."""
    case = load_case(name)
    if "body_chunks_b64" in case:
        return b"".join(base64.b64decode(c) for c in case["body_chunks_b64"])
    return b"".join(c.encode("utf-8") for c in case["body_chunks"])


@contextmanager
def corpus_server(name: str) -> Iterator[str]:
    """Serve one corpus case with the corpus's replay server; yields its base URL."""
    server = subprocess.Popen(
        [sys.executable, str(SSE_CASES / "serve_case.py"), str(SSE_CASES / f"{name}.json"),
         "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert server.stdout is not None
        yield f"http://127.0.0.1:{int(server.stdout.readline())}/v1"
    finally:
        server.kill()
        server.communicate()


def read_request(conn: socket.socket) -> bytes:
    """One request as a small test server reads it: the head and its Content-Length
    body, all of it (a server that closes with bytes unread sends a reset instead)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def serve_stream(httpserver: Any, body: bytes, status: int = 200,
                 content_type: str = "text/event-stream", **headers: str) -> None:
    """pytest-httpserver answers POST /v1/chat/completions with ``body``."""
    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_data(
        body, status=status, content_type=content_type, headers=headers)


# -- the test key never leaks --------------------------------------------------
#
# A session-wide guard: every stdout and stderr captured through subprocess
# (Popen.communicate, which subprocess.run uses), click's CliRunner or
# run_in_process is scanned for the key (raw, hex, URL-encoded, base64 at any
# alignment) as it is produced; each test's tmp_path is scanned after the test
# and every file under pytest's base temporary directory at the end of the
# session (recordings, logs, caches). Inputs are exempt, never outputs: config
# files (*.toml, which tests write to hand the CLI its key) and files passed to
# key_input(); the stdout of an assisters command is exempt only when the test
# itself typed the key into the prompt (an argument or stdin), which the echo
# model repeats. Any finding fails the run and is listed in the terminal summary.

KEY_INPUT_SUFFIXES = (".toml",)
_KEY_INPUT_FILES: set[Path] = set()
_HEADER_ARG = re.compile(r"^[\w-]+:\s")


@dataclass(frozen=True)
class KeyLeak:
    source: str  # a command line or a file path
    stream: str  # stdout, stderr or file
    form: str  # raw, base64, base64url, url-encoded, hex
    test: str = ""  # the test that was running

    def __str__(self) -> str:
        return f"{self.form} key in {self.stream} of {self.source}" + (f" ({self.test})" if self.test else "")


KEY_LEAKS: list[KeyLeak] = []
_leak_sink: list[KeyLeak] = KEY_LEAKS
_guard_basetemp: list[Path] = []
_current_test = [""]


def key_forms(key: str = SECRET) -> dict[str, list[bytes]]:
    """The byte patterns that give the key away, by encoding.

    Base64 of a longer text holds the key at one of three alignments; for each
    the characters that depend on the key alone are kept.
    """
    raw = key.encode()
    candidates = [("raw", raw), ("hex", raw.hex().encode()),
                  ("url-encoded", quote(key, safe="").encode()), ("url-encoded", quote_plus(key).encode())]
    for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
        for shift in range(3):
            text = encode(b"\0" * shift + raw)
            first = -(-8 * shift // 6)  # the first character made of key bits only
            last = 8 * (shift + len(raw)) // 6
            candidates.append((name, text[first:last]))
    forms: dict[str, list[bytes]] = {}
    seen: set[bytes] = set()
    for name, pattern in candidates:  # a form that encodes to the same bytes is reported once
        if pattern not in seen:
            seen.add(pattern)
            forms.setdefault(name, []).append(pattern)
    return forms


_KEY_FORMS = key_forms()


def find_key(data: bytes | str | None) -> list[str]:
    """The forms of the test key that occur in ``data`` (empty when none)."""
    if not data:
        return []
    blob = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)
    return [name for name, patterns in _KEY_FORMS.items() if any(p in blob for p in patterns)]


def note_output(source: str, stdout: bytes | str | None, stderr: bytes | str | None, *,
                key_in_prompt: bool = False) -> None:
    """Scan one command's captured output now; findings fail the session."""
    test = _current_test[0]
    if not key_in_prompt:
        _leak_sink.extend(KeyLeak(source, "stdout", form, test) for form in find_key(stdout))
    _leak_sink.extend(KeyLeak(source, "stderr", form, test) for form in find_key(stderr))


def key_input(path: Path) -> Path:
    """Mark a file a test writes (an input that holds the key on purpose) as exempt."""
    _KEY_INPUT_FILES.add(Path(path).resolve())
    return path


def scan_tree(root: Path) -> list[KeyLeak]:
    """Every file under ``root`` that holds the key, except inputs."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix in KEY_INPUT_SUFFIXES or path.resolve() in _KEY_INPUT_FILES:
            continue
        if path.is_symlink() or not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        found += [KeyLeak(str(path), "file", form, _current_test[0]) for form in find_key(data)]
    return found


def _key_in_prompt(args: Any, input: bytes | str | None) -> bool:
    """An assisters command to which the test sent the key as prompt text (an
    argument or stdin), so an echo model may repeat it on stdout; an option
    value (--api-key, a header, a URL) never counts."""
    if isinstance(args, (str, bytes, os.PathLike)):
        args = [args]
    texts = [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in args or ()]
    if not any(t == "assisters" or t.endswith(("/assisters", "assisters (in process)")) for t in texts):
        return False
    if find_key(input):
        return True
    for text in texts:
        if (SECRET in text and text != SECRET and "://" not in text and not _HEADER_ARG.match(text)
                and not text.startswith("Bearer ")):
            return True
    return False


def _command_line(args: Any) -> str:
    if isinstance(args, (str, bytes, os.PathLike)):
        return os.fsdecode(args)
    return " ".join(os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in args)


@contextmanager
def collecting_leaks() -> Iterator[list[KeyLeak]]:
    """Findings inside the block go to the yielded list, not to the session's
    (for the guard's own tests, which leak on purpose)."""
    global _leak_sink
    saved, _leak_sink = _leak_sink, []
    try:
        yield _leak_sink
    finally:
        _leak_sink = saved


@pytest.fixture(scope="session", autouse=True)
def key_leak_guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from click.testing import CliRunner

    real_communicate = subprocess.Popen.communicate
    real_invoke = CliRunner.invoke

    def communicate(self: subprocess.Popen[Any], input: Any = None, timeout: float | None = None) -> Any:
        stdout, stderr = real_communicate(self, input, timeout)
        note_output(_command_line(self.args), stdout, stderr, key_in_prompt=_key_in_prompt(self.args, input))
        return stdout, stderr

    def invoke(self: CliRunner, cli: Any, args: Any = None, input: Any = None, *a: Any, **kw: Any) -> Any:
        result = real_invoke(self, cli, args, input, *a, **kw)
        ours = getattr(cli.callback, "__module__", "").startswith("assisters")
        prompt = _key_in_prompt(["assisters (in process)", *(args or [])] if ours else [], input)
        note_output(f"CliRunner {cli.name} {_command_line(args or [])}", result.stdout_bytes,
                    result.stderr_bytes, key_in_prompt=prompt)
        return result

    _guard_basetemp.append(tmp_path_factory.getbasetemp())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "communicate", communicate)
        patch.setattr(CliRunner, "invoke", invoke)
        yield


def run_in_process(*args: str, input: bytes = b"", env: dict[str, str] | None = None,
                   ) -> subprocess.CompletedProcess[bytes]:
    """``assisters ARGS`` through ``assisters.commands.main`` in this process (no
    start-up cost), stdin and stdout pipes as far as the CLI can tell."""
    from click.testing import CliRunner

    from assisters.commands.main import main

    with CliRunner().isolation(input=input, env=env) as (out, err, _):
        try:
            main(list(args))
            status: Any = 0
        except SystemExit as exc:
            status = exc.code
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        stdout, stderr = out.getvalue(), err.getvalue()
    if not isinstance(status, int):
        status = 0 if status is None else 1
    command = ["assisters (in process)", *args]
    note_output(_command_line(command), stdout, stderr, key_in_prompt=_key_in_prompt(command, input))
    return subprocess.CompletedProcess(["assisters", *args], status, stdout, stderr)


# Counters the fuzz tests fill in, for the terminal summary.
FUZZ_STATS: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def key_leak_scan(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """Names the running test in findings; scans its tmp_path before pytest may remove it."""
    _current_test[0] = request.node.nodeid
    yield
    KEY_LEAKS.extend(scan_tree(tmp_path))
    _current_test[0] = ""


@pytest.hookimpl(tryfirst=True)  # before the tmpdir plugin may remove the base directory
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _guard_basetemp:
        known = {(leak.source, leak.stream, leak.form) for leak in KEY_LEAKS}
        KEY_LEAKS.extend(leak for leak in scan_tree(_guard_basetemp[0])
                         if (leak.source, leak.stream, leak.form) not in known)
    if KEY_LEAKS and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FUZZ_STATS:
        terminalreporter.write_line(
            f"fuzz: {FUZZ_STATS['mutated streams']} mutated streams through chat "
            f"({FUZZ_STATS['process runs']} as processes), "
            f"{FUZZ_STATS['hypothesis examples']} hypothesis examples")
    if KEY_LEAKS:
        terminalreporter.write_sep("=", "the test API key leaked (this fails the run)", red=True, bold=True)
        for leak in dict.fromkeys(KEY_LEAKS):
            terminalreporter.write_line(f"LEAK: {leak}", red=True)
