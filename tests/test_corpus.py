"""The shared SSE edge-case corpus, run as real processes over loopback.

Two views of every case: the corpus's own runner (stdout bytes, exit, stderr,
no traceback, no key), and ``chat --json`` for what the corpus lists as
informational (finish reason, usage, reasoning, tool calls, other choices) and
for the exact exit status the README's table promises.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import SECRET, SSE_CASES, cli_command, corpus_server, needs_corpus, run_cli

pytestmark = needs_corpus

CASES = sorted(SSE_CASES.glob("*.json")) if SSE_CASES.is_dir() else []

# Exit status for every case the corpus expects to fail (errors.py has the table).
ERROR_STATUS = {
    "cut-clean-close-no-finish": 75,
    "cut-inside-json-line": 75,
    "cut-midstream-abort": 75,
    "trailing-event-without-blank-line": 75,
    "empty-200-body": 76,
    "data-error-object-midstream": 69,
    "event-error-midstream": 69,
    "openrouter-error-finish-reason": 69,
    "llamacpp-error-field": 65,
    "unframed-json-error-in-sse": 65,
    "json-error-body-status-200": 69,
    "http-400-context-length": 65,
    "http-400-stream-unsupported": 65,
    "http-401-invalid-key": 77,
    "http-404-model-not-found": 65,
    "http-404-ollama-string-error": 65,
    "http-429-retry-after": 75,
    "http-500-server-error": 69,
    "http-502-html": 69,
    "http-503-overloaded": 69,
}


def test_corpus_runner_passes_every_case():
    command = " ".join(cli_command("chat"))
    result = subprocess.run(
        [sys.executable, str(SSE_CASES / "run_cases.py"), "--cmd", command, "-j", "4"],
        capture_output=True, text=True, timeout=600,
    )
    last = result.stdout.strip().splitlines()[-1]
    assert last == f"{len(CASES)} passed, 0 failed", result.stdout
    assert result.returncode == 0


@pytest.mark.parametrize("case_path", CASES, ids=[c.stem for c in CASES])
def test_case_as_json(case_path: Path):
    case = json.loads(case_path.read_text(encoding="utf-8"))
    expect = case["expect"]
    with corpus_server(case_path.stem) as base_url:
        result = run_cli("chat", "--json", "--max-retries=0", "hi",
                         env={"ASSISTERS_BASE_URL": base_url, "ASSISTERS_API_KEY": SECRET})
    assert SECRET.encode() not in result.stdout + result.stderr
    assert b"Traceback" not in result.stderr
    if expect["exit"] == "error":
        assert result.returncode == ERROR_STATUS[case["name"]], result.stderr
        [line] = result.stderr.decode().splitlines()
        if result.stdout:  # events arrived: the object so far, marked with the failure
            completion = orjson.loads(result.stdout)
            assert completion["error"] == {"status": result.returncode,
                                           "message": line.removeprefix("assisters: error: ")}
            choice = next((c for c in completion["choices"] if c["index"] == 0), None)
            assert ((choice["message"]["content"] if choice else None) or "") == expect["stdout"]
        else:
            assert expect["stdout"] == ""
        return
    assert result.returncode == 0, result.stderr
    completion = orjson.loads(result.stdout)
    check_informational(completion, expect)


def check_informational(completion: dict[str, Any], expect: dict[str, Any]) -> None:
    choices = {c["index"]: c for c in completion["choices"]}
    message = choices[0]["message"]
    assert (message["content"] or "") == expect["stdout"]
    assert choices[0]["finish_reason"] == expect["finish_reason"]
    if "usage" in expect:
        usage = completion["usage"]
        assert {k: usage[k] for k in expect["usage"]} == expect["usage"]
    assert message.get("reasoning_content") == expect.get("reasoning")
    tool_calls = [
        {"id": c["id"], "type": c["type"], **c["function"]} for c in message.get("tool_calls", [])
    ]
    assert tool_calls == expect.get("tool_calls", [])
    others = {str(i): c["message"]["content"] for i, c in choices.items() if i != 0}
    assert others == expect.get("other_choices", {})
