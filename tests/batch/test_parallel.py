"""README's recipe for more than one process: GNU parallel shards the input, then merge."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.conftest import SECRET

pytestmark = pytest.mark.skipif(shutil.which("parallel") is None,
                                reason="GNU parallel is not installed (apt-get install parallel)")

RECIPE = """
parallel --will-cite --pipepart -a big.jsonl --block 2k assisters batch run -q -o out.{#}.jsonl
cat out.*.jsonl > answers.jsonl
"""


def test_sharded_with_gnu_parallel_merged_and_resumed(tmp_path: Path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "assisters").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m assisters "$@"\n')
    (bindir / "assisters").chmod(0o755)
    lines = [{"custom_id": f"q{i}",
              "body": {"model": "echo", "messages": [{"role": "user", "content": f"q {i}"}]}}
             for i in range(100)]
    (tmp_path / "big.jsonl").write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    with ChatServer(ServeOptions(tokens_per_second=0)) as srv:
        env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
               "ASSISTERS_BASE_URL": srv.base_url, "ASSISTERS_API_KEY": SECRET}
        for _ in range(2):  # the second run resumes every shard: nothing is sent again
            result = subprocess.run(["bash", "-c", "set -e -o pipefail\n" + RECIPE], cwd=tmp_path, env=env,
                                    stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
            assert result.returncode == 0, result.stderr
        assert srv.requests_seen == 100
    assert len(list(tmp_path.glob("out.*.jsonl"))) > 1
    merged = [orjson.loads(line) for line in (tmp_path / "answers.jsonl").read_bytes().splitlines()]
    assert sorted(line["custom_id"] for line in merged) == sorted(f"q{i}" for i in range(100))
    assert all(line["response"]["status_code"] == 200 for line in merged)
