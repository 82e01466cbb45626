"""Conversations from scripts, as real processes: every turn stored, -c sending the
history, crashes, Ctrl-C, --no-store, and a conversation too long for the model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from werkzeug import Request, Response

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.conftest import SECRET, chunk, cli_command, run_cli, run_measured, sse, text_stream


def conversations() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "assisters" / "conversations"


def records(conversation_id: str | None = None) -> list[dict[str, Any]]:
    files = sorted(conversations().glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    path = conversations() / f"{conversation_id}.jsonl" if conversation_id else files[-1]
    return [json.loads(line) for line in path.read_text().splitlines()]


def roles(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r.get("role") or r["event"], r.get("content", "")) for r in found]


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer(ServeOptions(tokens_per_second=200)) as srv:
        yield srv


def env_for(base_url: str) -> dict[str, str]:
    return {"ASSISTERS_BASE_URL": base_url, "ASSISTERS_API_KEY": SECRET}


def test_continue_from_a_pipe_sends_the_whole_history_and_stores_both(httpserver):
    bodies: list[dict[str, Any]] = []
    answers = iter(["Bonjour means hello.", "Et en français : bonjour."])

    def reply(request: Request) -> Response:
        bodies.append(request.get_json())
        return Response(text_stream(next(answers)), content_type="text/event-stream")

    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_handler(reply)
    env = env_for(httpserver.url_for("/v1"))
    first = run_cli("chat", "-m", "tiny", "-s", "be brief", "What is bonjour?", env=env)
    assert (first.returncode, first.stdout, first.stderr) == (0, b"Bonjour means hello.", b"")
    second = run_cli("chat", "-c", "--json", input=b"and in French?\n", env=env)
    assert second.returncode == 0, second.stderr
    assert second.stderr == b""
    assert bodies[1]["model"] == "tiny"  # a continued conversation keeps its model
    assert bodies[1]["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "What is bonjour?"},
        {"role": "assistant", "content": "Bonjour means hello."},
        {"role": "user", "content": "and in French?\n"},
    ]
    assert bodies[1]["stream_options"] == {"include_usage": True}  # its size, as the server counts it
    output = orjson.loads(second.stdout)
    assert output["choices"][0]["message"]["content"] == "Et en français : bonjour."
    found = records(output["conversation"])
    assert roles(found) == [("system", "be brief"), ("user", "What is bonjour?"),
                            ("assistant", "Bonjour means hello."), ("user", "and in French?\n"),
                            ("assistant", "Et en français : bonjour.")]
    assert found[-1]["finish_reason"] == "stop"
    assert found[1]["model"] == found[2]["model"] == "tiny"
    assert "interrupted" not in found[-1] and "incomplete" not in found[-1]


def test_conversation_id_continues_that_one_and_unknown_ids_are_usage_errors(server):
    env = env_for(server.base_url)
    run_cli("chat", "-m", "echo", "first", env=env)
    first_id = records()[0] and sorted(p.stem for p in conversations().glob("*.jsonl"))[0]
    run_cli("chat", "-m", "echo", "another", env=env)
    result = run_cli("chat", "--conversation", first_id, "again", env=env)
    assert (result.returncode, result.stdout) == (0, b"again")
    assert roles(records(first_id))[-2:] == [("user", "again"), ("assistant", "again")]
    missing = run_cli("chat", "--conversation", "20000101-000000-dead", "hi", env=env)
    assert missing.returncode == 2
    assert missing.stderr.decode().startswith("assisters: error: no conversation '20000101-000000-dead'")
    assert server.requests_seen == 3  # nothing sent for the unknown id


def test_continue_with_nothing_stored_is_a_usage_error(server):
    result = run_cli("chat", "-c", "hi", env=env_for(server.base_url))
    assert result.returncode == 2
    assert result.stderr.decode().count("\n") == 1
    assert "no conversation is stored yet" in result.stderr.decode()
    assert server.requests_seen == 0


def test_no_store_keeps_a_chat_out_and_reads_without_writing(server):
    env = env_for(server.base_url)
    assert run_cli("chat", "--no-store", "-m", "echo", "secret plans", env=env).stdout == b"secret plans"
    assert not conversations().exists()
    run_cli("chat", "-m", "echo", "kept", env=env)
    before = records()
    again = run_cli("chat", "-c", "--no-store", "and this?", env=env)
    assert again.stdout == b"and this?"
    assert records() == before
    off = run_cli("chat", "-m", "echo", "off by config", env={**env, "ASSISTERS_STORE": "0"})
    assert off.returncode == 0
    assert len(list(conversations().glob("*.jsonl"))) == 1


def test_the_key_is_never_stored_even_when_the_prompt_quotes_it(server):
    result = run_cli("chat", "-m", "echo", f"is {SECRET} my key?", env=env_for(server.base_url))
    assert result.returncode == 0
    stored = b"".join(p.read_bytes() for p in conversations().glob("*.jsonl"))
    assert SECRET.encode() not in stored
    assert b"is [REDACTED] my key?" in stored


LONG = ["-m", "lorem", "--max-tokens", "100000"]


def start_answer(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[bytes], bytes]:
    process = subprocess.Popen(cli_command("chat", "-c", *LONG, *args), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env})
    assert process.stdout is not None
    return process, os.read(process.stdout.fileno(), 200)  # the answer has begun


def test_kill_9_during_an_answer_loses_only_that_answer(server):
    env = env_for(server.base_url)
    assert run_cli("chat", "-m", "echo", "one", env=env).returncode == 0
    process, shown = start_answer(env, "two")
    assert shown
    process.kill()
    process.communicate(timeout=30)
    assert roles(records()) == [("user", "one"), ("assistant", "one"), ("user", "two")]
    after = run_cli("chat", "-c", "-m", "echo", "three", env=env)
    assert (after.returncode, after.stdout, after.stderr) == (0, b"three", b"")
    assert roles(records())[-2:] == [("user", "three"), ("assistant", "three")]


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_during_an_answer_stores_what_was_shown_marked_interrupted(server, signum, status):
    env = env_for(server.base_url)
    run_cli("chat", "-m", "echo", "one", env=env)
    process, shown = start_answer(env, "two")
    process.send_signal(signum)
    rest, stderr = process.communicate(timeout=30)
    assert process.returncode == status
    assert stderr == b""
    answer = records()[-1]
    assert answer["role"] == "assistant" and answer["interrupted"] is True
    assert answer["content"] == (shown + rest).decode()
    assert answer["model"] == "lorem"


def long_answer(pieces: int) -> list[str]:
    """Answer pieces of about 4 KB, with text that JSON escapes and text it does not."""
    return [f"piece {i:05d} \"quoted\" \\ tab\t é 漢字 🎉\n" + "w" * 4000 for i in range(pieces)]


def serve_pieces(httpserver: Any, pieces: list[str], *, reasoning: list[str] = ()) -> None:
    def reply(request: Request) -> Response:
        events = [chunk("", role="assistant")] + [chunk(reasoning_content=r) for r in reasoning]
        head = sse(*events, done=False)
        tail = sse(chunk(finish="stop"))
        return Response(iter([head, *(sse(chunk(p), done=False) for p in pieces), tail]),
                        content_type="text/event-stream")

    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_handler(reply)


def test_a_long_answer_is_stored_whole_while_memory_stays_flat(httpserver, tmp_path):
    """A one-shot chat spools a long answer to disk: 40 MB of answer cost no more
    memory than 4 KB (it took over 100 MB more when the answer was kept in memory)."""
    env = env_for(httpserver.url_for("/v1"))
    serve_pieces(httpserver, long_answer(1))
    status, stdout, stderr, short_peak = run_measured(tmp_path, "chat", "short", env=env)
    assert (status, stderr) == (0, b"")
    httpserver.clear()
    pieces = long_answer(10_000)
    serve_pieces(httpserver, pieces)
    status, stdout, stderr, long_peak = run_measured(tmp_path, "chat", "long", env=env)
    expected = "".join(pieces)
    assert (status, stderr) == (0, b"")
    assert stdout == expected.encode()
    stored = records()
    assert roles(stored)[-2:] == [("user", "long"), ("assistant", expected)]
    assert stored[-1]["finish_reason"] == "stop"
    assert long_peak < short_peak + 5, f"peak RSS {short_peak:.1f} MB for 4 KB, {long_peak:.1f} MB for 40 MB"
    assert sorted(p.suffix for p in conversations().iterdir()) == [".jsonl", ".jsonl"]  # no spool left


def test_reasoning_is_stored_and_never_sent_back(httpserver):
    bodies: list[dict[str, Any]] = []
    env = env_for(httpserver.url_for("/v1"))
    serve_pieces(httpserver, ["Paris."], reasoning=["The capital", " of France..."])
    first = run_cli("chat", "capital of France?", env=env)
    assert (first.returncode, first.stdout) == (0, b"Paris.")
    answer = records()[-1]
    assert (answer["content"], answer["reasoning_content"]) == ("Paris.", "The capital of France...")
    httpserver.clear()
    httpserver.expect_request("/v1/chat/completions").respond_with_handler(
        lambda request: bodies.append(request.get_json()) or Response(text_stream("Yes."),
                                                                      content_type="text/event-stream"))
    assert run_cli("chat", "-c", "sure?", env=env).returncode == 0
    assert bodies[0]["messages"][1] == {"role": "assistant", "content": "Paris."}
    assert "reasoning_content" not in records()[-1]  # this answer had none


def test_long_reasoning_is_spooled_and_stored_whole(httpserver):
    reasoning = long_answer(40)  # 160 KB: past the spool threshold
    serve_pieces(httpserver, ["ok"], reasoning=reasoning)
    result = run_cli("chat", "think hard", env=env_for(httpserver.url_for("/v1")))
    assert (result.returncode, result.stdout) == (0, b"ok")
    answer = records()[-1]
    assert (answer["content"], answer["reasoning_content"]) == ("ok", "".join(reasoning))


def test_ctrl_c_during_a_long_answer_stores_all_that_was_shown(httpserver):
    """Past the spool threshold, then Ctrl-C: the spooled text and the rest are stored."""
    release = threading.Event()
    pieces = long_answer(30)

    def reply(request: Request) -> Response:
        def body() -> Iterator[bytes]:
            yield sse(chunk("", role="assistant"), *(chunk(p) for p in pieces), done=False)
            release.wait(30)  # the answer stalls: the user presses Ctrl-C
            yield sse(chunk(finish="stop"))
        return Response(body(), content_type="text/event-stream")

    httpserver.expect_request("/v1/chat/completions").respond_with_handler(reply)
    process = subprocess.Popen(cli_command("chat", "go"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE,
                               env={**os.environ, **env_for(httpserver.url_for("/v1"))})
    try:
        expected = "".join(pieces).encode()
        shown = b""
        while len(shown) < len(expected):
            data = os.read(process.stdout.fileno(), 1 << 16)
            assert data, "the answer ended early"
            shown += data
        process.send_signal(signal.SIGINT)
        rest, stderr = process.communicate(timeout=30)
    finally:
        release.set()
    assert (process.returncode, shown + rest, stderr) == (130, expected, b"")
    answer = records()[-1]
    assert answer["interrupted"] is True
    assert answer["content"] == expected.decode()


@pytest.fixture
def small_server() -> Iterator[ChatServer]:
    """Takes prompts of at most 12 words (the server's token count)."""
    with ChatServer(ServeOptions(tokens_per_second=0, context_length=12)) as srv:
        yield srv


def grow(env: dict[str, str]) -> None:
    """Three exchanges of 2 + 2 words: the next question of 2 words needs 14 tokens."""
    assert run_cli("chat", "-m", "echo", "one two", env=env).returncode == 0
    for words in ("three four", "five six"):
        assert run_cli("chat", "-c", words, env=env).returncode == 0


def test_a_conversation_too_long_fails_in_one_line_and_keeps_the_question(small_server):
    env = env_for(small_server.base_url)
    grow(env)
    result = run_cli("chat", "-c", "seven eight", env=env)
    assert result.returncode == 65
    assert result.stdout == b""
    assert result.stderr.decode() == (
        "assisters: error: the conversation is too long for the model's context window (HTTP 400: "
        "This model's maximum context length is 12 tokens. However, your messages resulted in 14 "
        "tokens. Please reduce the length of the messages.); try a new conversation (no -c), "
        "or --context drop-oldest\n")
    failed = records()[-1]
    assert (failed["role"], failed["content"], failed["incomplete"]) == ("assistant", "", True)


def test_drop_oldest_leaves_out_the_oldest_exchanges_until_the_server_takes_it(small_server):
    env = env_for(small_server.base_url)
    grow(env)
    before = small_server.requests_seen
    result = run_cli("chat", "-c", "--context", "drop-oldest", "seven eight", env=env)
    assert (result.returncode, result.stdout) == (0, b"seven eight")
    assert result.stderr.decode() == ("assisters: the 1 oldest exchange(s) were left out to fit the model's "
                                      "context window (--context drop-oldest)\n")
    assert small_server.requests_seen - before == 2  # refused once, then taken
    assert roles(records())[0] == ("user", "one two")  # the store keeps everything
    by_config = run_cli("chat", "-c", "nine ten", env={**env, "ASSISTERS_CONTEXT": "drop-oldest"})
    assert by_config.returncode == 0
    too_long = run_cli("chat", "-c", "--context", "drop-oldest", " ".join(["word"] * 13), env=env)
    assert too_long.returncode == 65
    assert "even the newest question alone is too long" in too_long.stderr.decode()
    alone = run_cli("chat", "-m", "echo", " ".join(["word"] * 13), env=env)  # no history: the words as sent
    assert alone.returncode == 65
    assert alone.stderr.decode().startswith("assisters: error: HTTP 400: This model's maximum context")


def test_one_shot_chat_never_loads_prompt_toolkit(server):
    python, *rest = cli_command("chat", "-m", "echo", "hi")
    result = subprocess.run([python, "-X", "importtime", *rest], capture_output=True,
                            stdin=subprocess.DEVNULL, env={**os.environ, **env_for(server.base_url)},
                            timeout=60)
    assert result.returncode == 0 and result.stdout == b"hi"
    assert b"assisters.conversation.session" in result.stderr  # importtime is on
    assert b"prompt_toolkit" not in result.stderr
