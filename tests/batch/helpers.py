"""What the batch tests share: settings for a client of a local server, input files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from assisters.batch.provider import BatchClient, ProviderAPI
from assisters.config import Settings
from assisters.redact import Secret
from assisters.retry import RetryPolicy
from tests.conftest import SECRET
from tests.server.helpers import batch_lines, request_line


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
