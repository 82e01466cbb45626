"""``assisters conversations list|show|rm`` as real processes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.conftest import SECRET, run_cli


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    with ChatServer(ServeOptions(tokens_per_second=0)) as server:
        yield {"ASSISTERS_BASE_URL": server.base_url, "ASSISTERS_API_KEY": SECRET}


def ids() -> list[str]:
    folder = Path(os.environ["XDG_DATA_HOME"]) / "assisters" / "conversations"
    return [p.stem for p in sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)]


def chat(env: dict[str, str], *args: str) -> None:
    assert run_cli("chat", *args, env=env).returncode == 0


def test_list_shows_the_most_recent_first(env):
    chat(env, "-m", "echo", "-s", "be kind", "What is   a\npipe, really? Tell me everything about it, please")
    chat(env, "-c", "and a FIFO?")
    chat(env, "-m", "lorem", "second conversation")
    result = run_cli("conversations", "list", env=env)
    assert result.returncode == 0 and result.stderr == b""
    lines = result.stdout.decode().splitlines()
    newest, oldest = ids()[::-1]
    assert lines[0].startswith(f"{newest}  ") and lines[0].endswith("  lorem  1  second conversation")
    assert lines[1].startswith(f"{oldest}  ")
    assert lines[1].endswith("  echo  2  What is a pipe, really? Tell me everything about it, please")
    rows = json.loads(run_cli("conversations", "list", "--json", env=env).stdout)
    assert [r["id"] for r in rows] == [newest, oldest]
    assert rows[1]["turns"] == 2 and rows[1]["model"] == "echo" and rows[1]["time"].endswith("Z")
    assert Path(rows[1]["path"]).name == f"{oldest}.jsonl"


def test_list_shows_the_20_most_recent_unless_limit_says_otherwise(env):
    for number in range(22):
        chat(env, "-m", "echo", f"question {number}")
    newest_first = ids()[::-1]
    listed = run_cli("conversations", "list", env=env)
    assert (listed.returncode, listed.stderr) == (0, b"")  # no note: stdout is not a terminal
    assert [line.split()[0] for line in listed.stdout.decode().splitlines()] == newest_first[:20]
    two = run_cli("conversations", "list", "-n", "2", "--json", env=env)
    assert [row["id"] for row in json.loads(two.stdout)] == newest_first[:2]
    every = run_cli("conversations", "list", "--limit", "0", env=env)
    assert len(every.stdout.splitlines()) == 22
    refused = run_cli("conversations", "list", "--limit", "-1", env=env)
    assert refused.returncode == 2
    assert b"'-n' / '--limit'" in refused.stderr


def test_an_empty_store_lists_nothing(env):
    result = run_cli("conversations", "list", env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert run_cli("conversations", "list", "--json", env=env).stdout == b"[]\n"


def test_show_prints_the_messages_and_json_is_a_body_for_raw(env):
    chat(env, "-m", "echo", "-s", "be kind", "first question")
    chat(env, "-c", "second question")
    text = run_cli("conversations", "show", env=env)
    assert text.returncode == 0
    shown = text.stdout.decode()
    assert shown.startswith("[system]\nbe kind\n\n[user ")
    assert "]\nfirst question\n\n[assistant echo]\nfirst question\n\n" in shown
    assert shown.endswith("[assistant echo]\nsecond question\n\n")
    as_json = run_cli("conversations", "show", ids()[0][:10], "--json", env=env)
    body = json.loads(as_json.stdout)
    assert body == {"model": "echo", "messages": [
        {"role": "system", "content": "be kind"},
        {"role": "user", "content": "first question"}, {"role": "assistant", "content": "first question"},
        {"role": "user", "content": "second question"}, {"role": "assistant", "content": "second question"}]}
    body["messages"].append({"role": "user", "content": "third"})
    raw = run_cli("raw", input=json.dumps(body).encode(), env=env)
    assert json.loads(raw.stdout)["choices"][0]["message"]["content"] == "third"


def test_rm_removes_and_an_unknown_id_is_a_usage_error(env):
    chat(env, "-m", "echo", "one")
    chat(env, "-m", "echo", "two")
    first, second = ids()
    missing = run_cli("conversations", "rm", first, "20000101-000000-none", env=env)
    assert missing.returncode == 2
    assert missing.stderr.decode().startswith("assisters: error: no conversation '20000101-000000-none'")
    assert ids() == [first, second]  # nothing removed when one id is wrong
    result = run_cli("conversations", "rm", first, env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert ids() == [second]
    assert run_cli("conversations", "show", first, env=env).returncode == 2
