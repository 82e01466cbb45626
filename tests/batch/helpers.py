"""What the batch tests share: running ``batch run`` as a process and reading OUTPUT
back; settings and a Batch API client for a local server; input files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import orjson

from assisters.batch.provider import BatchClient, ProviderAPI
from assisters.config import Settings
from assisters.redact import Secret
from assisters.retry import RetryPolicy
from assisters.server.app import ChatServer
from tests.conftest import SECRET, cli_command, run_cli
from tests.server.helpers import batch_lines, request_line


def env_for(server: ChatServer, **extra: str) -> dict[str, str]:
    return {"ASSISTERS_BASE_URL": server.base_url, "ASSISTERS_API_KEY": SECRET, **extra}


def batch_run(server: ChatServer, *args: str, input: bytes = b"", **env: str,
              ) -> subprocess.CompletedProcess[bytes]:
    return run_cli("batch", "run", *args, input=input, env=env_for(server, **env), timeout=120)


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
