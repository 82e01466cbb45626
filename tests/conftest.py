"""Shared fixtures: a clean environment, the CLI as a real process, SSE bodies."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def serve_stream(httpserver: Any, body: bytes, status: int = 200,
                 content_type: str = "text/event-stream", **headers: str) -> None:
    """pytest-httpserver answers POST /v1/chat/completions with ``body``."""
    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_data(
        body, status=status, content_type=content_type, headers=headers)
