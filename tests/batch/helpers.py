"""What the batch tests share: running ``batch run`` and the Batch API commands as
processes and reading OUTPUT back; settings and a Batch API client for a local
server; input files; a stderr on a pseudo-terminal; a raw HTTP server that can hang
up half-way."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import socket
import struct
import subprocess
import termios
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import orjson

from assisters.batch.provider import BatchClient, ProviderAPI
from assisters.config import Settings
from assisters.redact import Secret
from assisters.retry import RetryPolicy
from assisters.server.app import ChatServer
from tests.conftest import SECRET, cli_command, read_request, run_cli
from tests.server.helpers import batch_lines, request_line

FAST = ("--poll-interval", "0.02", "--max-poll-interval", "0.1")  # --wait polls of a local server


def env_for(server: ChatServer, **extra: str) -> dict[str, str]:
    return {"ASSISTERS_BASE_URL": server.base_url, "ASSISTERS_API_KEY": SECRET, **extra}


def batch_run(server: ChatServer, *args: str, input: bytes = b"", **env: str,
              ) -> subprocess.CompletedProcess[bytes]:
    return run_cli("batch", "run", *args, input=input, env=env_for(server, **env), timeout=120)


def batch_cli(server: ChatServer, *args: str, input: bytes = b"", **env: str,
              ) -> subprocess.CompletedProcess[bytes]:
    """``assisters batch ARGS`` (submit, status, results, ...) against ``server``."""
    return run_cli("batch", *args, input=input, env=env_for(server, **env), timeout=120)


def start_batch(server: ChatServer, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cli_command("batch", "run", *args), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **env_for(server)})


def output_lines(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n")
    return [orjson.loads(line) for line in data.splitlines()]


def by_id(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    ids = [line["custom_id"] for line in lines]
    assert len(ids) == len(set(ids)), "a custom_id was written twice"
    return {line["custom_id"]: line for line in lines}


def content(line: dict[str, Any]) -> str:
    return line["response"]["body"]["choices"][0]["message"]["content"]


def prompts_file(path: Path, count: int, prefix: str = "prompt") -> Path:
    path.write_text("".join(f"{prefix} {i}\n" for i in range(1, count + 1)))
    return path


def settings_for(base_url: str) -> Settings:
    return Settings(base_url=base_url, model="echo", api_key=Secret(SECRET), connect_timeout=5,
                    idle_timeout=10, stream_usage=None)


def batch_client(base_url: str, *, api: ProviderAPI | None = None, retries: int = 0,
                 notices: list[str] | None = None, max_wait: float = 60.0) -> BatchClient:
    policy = RetryPolicy(max_retries=retries, base_delay=0.01, max_wait=max_wait)
    return BatchClient(settings_for(base_url), api or ProviderAPI(), policy=policy,
                       notify=notices.append if notices is not None else None)


def input_file(tmp_path: Path, *texts: str, **body: Any) -> Path:
    """A Batch input file asking ``echo`` about each text, custom_ids q0, q1, ..."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(batch_lines(*(request_line(f"q{i}", t, **body) for i, t in enumerate(texts))))
    return path


def on_terminal(args: list[str], env: dict[str, str]) -> tuple[int, bytes]:
    """Run with stderr on a pseudo-terminal (stdout a pipe); returns (status, what stderr showed)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a size
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal,
                               env={**os.environ, **env})
    os.close(terminal)
    screen = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not data:
            break
        screen += data
    os.close(controller)
    return process.wait(timeout=30), screen


@contextmanager
def raw_http_server(answer: Callable[[bytes], bytes]) -> Iterator[str]:
    """A server that reads a request (its head, and a small body) and sends
    ``answer(request)`` as is, then hangs up: a reply can be cut anywhere. Yields the
    base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # close() would not wake a blocked accept(): poll a stop flag
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                with suppress(OSError):  # the client hung up first
                    conn.sendall(answer(read_request(conn)))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join()
        listener.close()


def http_reply(body: bytes, *, length: int | None = None, content_type: str = "application/json") -> bytes:
    """A whole HTTP/1.1 reply, or (``length`` larger than the body) one that promises more."""
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n\r\n")
    return head.encode() + body
