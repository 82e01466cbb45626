"""`assisters debug` end to end: real processes, real loopback servers.

One JSON line per SSE item on stdout (checked against an independent reading of
each corpus case's bytes), a summary with anomalies on stderr, and chat's exit
statuses.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pytest

from tests.commands.corpus_reading import reference_items, run_case
from tests.conftest import (
    SECRET,
    case_body,
    chunk,
    load_case,
    needs_corpus,
    run_cli,
    serve_stream,
    sse,
    text_stream,
)


def parse_lines(stdout: bytes) -> list[dict[str, Any]]:
    assert stdout == b"" or stdout.endswith(b"\n")
    return [orjson.loads(line) for line in stdout.splitlines()]


def check_records(records: list[dict[str, Any]]) -> None:
    """Indexes 1..N in order, ms never decreasing, the documented keys only."""
    events = [r for r in records if "index" in r]
    assert [r["index"] for r in events] == list(range(1, len(events) + 1))
    times = [r["ms"] for r in records]
    assert all(isinstance(t, float | int) and t >= 0 for t in times)
    assert times == sorted(times)
    for r in records:
        if "index" in r:
            assert set(r) <= {"index", "ms", "event", "id", "data", "json", "done"}
            assert {"index", "ms", "event", "data"} <= set(r)
        elif "comment" in r:
            assert set(r) == {"ms", "comment"}
        else:
            assert set(r) == {"ms", "field", "value"}


def as_expected_record(item: tuple[Any, ...]) -> dict[str, Any]:
    """What debug prints for a reference item, without ``index`` and ``ms``."""
    if item[0] == "comment":
        return {"comment": item[1]}
    if item[0] == "field":
        return {"field": item[1], "value": item[2]}
    _, kind, event_id, data = item
    record: dict[str, Any] = {"event": kind, "data": data}
    if event_id is not None:
        record["id"] = event_id
    try:
        record["data"] = json.loads(data)
    except ValueError:
        record["json"] = False
    if data.startswith("[DONE]"):
        record["done"] = True
    return record


def without_position(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("index", "ms")}


def choice0_text(records: list[dict[str, Any]]) -> str:
    """Concatenated choice-0 delta content of the events up to the first [DONE]."""
    text = []
    for r in records:
        if r.get("done"):
            break
        data = r.get("data")
        if "index" not in r or not isinstance(data, dict):
            continue
        for choice in data.get("choices") or []:
            if choice.get("index", 0) == 0 and isinstance(choice.get("delta"), dict):
                text.append(choice["delta"].get("content") or "")
    return "".join(text)


def content_chunks(records: list[dict[str, Any]]) -> int:
    """Events before [DONE] that added choice-0 text."""
    count = 0
    for r in records:
        if r.get("done"):
            break
        if "index" in r and choice0_text([r]):
            count += 1
    return count


def summary_lines(stderr: bytes) -> list[str]:
    lines = stderr.decode().splitlines()
    assert lines[0].startswith("summary: "), lines
    assert lines[1].startswith("  time to first byte "), lines
    assert lines[2].startswith("  finish_reason "), lines
    assert lines[3].startswith("  anomalies: "), lines
    return lines


# name -> (extra args, exit status, substrings of the anomalies line or None for "none")
DEBUG_CASES: dict[str, tuple[tuple[str, ...], int, list[str] | None]] = {
    "lf-basic": ((), 0, None),
    "comments-openrouter": (("--comments",), 0, None),
    "multiline-data-json": ((), 0, None),
    "content-after-done-ignored": ((), 0, ["4 events after [DONE]", "1 unparsable data"]),
    "cut-midstream-abort": ((), 75, ["missing [DONE]", "transport: "]),
    "trailing-event-without-blank-line": ((), 75, ["missing [DONE]"]),
    "empty-200-body": ((), 76, ["empty 200 body"]),
    "llamacpp-error-field": ((), 65, [
        "1 unknown SSE fields", "error in stream: the request exceeds the available context size"]),
    "id-retry-event-fields": ((), 0, None),
    "usage-chunk-include-usage": ((), 0, None),
}


@needs_corpus
@pytest.mark.parametrize("name", list(DEBUG_CASES))
def test_debug_shows_every_item_of_a_corpus_case(name: str):
    args, status, anomalies = DEBUG_CASES[name]
    case = load_case(name)
    result = run_case(name, "debug", *args, "hi")
    assert result.returncode == status, result.stderr

    records = parse_lines(result.stdout)
    check_records(records)
    expected = [as_expected_record(i) for i in reference_items(case_body(name))
                if i[0] != "comment" or "--comments" in args]
    assert [without_position(r) for r in records] == expected

    events = [r for r in records if "index" in r]
    if case["expect"]["exit"] == "ok":
        assert choice0_text(records) == case["expect"]["stdout"]
    else:
        assert case["expect"]["stdout"].startswith(choice0_text(records))

    lines = summary_lines(result.stderr)
    assert lines[0].startswith(f"summary: {len(events)} events, {content_chunks(records)} content chunks, ")
    comments = sum(1 for i in reference_items(case_body(name)) if i[0] == "comment")
    assert f", {comments} comments, {len(case_body(name))} body bytes" in lines[0]
    if anomalies is None:
        assert lines[3] == "  anomalies: none"
    else:
        for needle in anomalies:
            assert needle in lines[3]
    if status == 0:
        assert len(lines) == 4, lines
        assert lines[2].startswith(f"  finish_reason {case['expect']['finish_reason']}, [DONE] yes, ")
    else:
        assert len(lines) == 5, lines
        assert lines[4].startswith("assisters: error: ")


@needs_corpus
def test_debug_reads_past_done_and_counts_what_came_after():
    result = run_case("content-after-done-ignored", "debug", "hi")
    records = parse_lines(result.stdout)
    done_at = [r["index"] for r in records if r.get("done")]
    assert len(done_at) == 2
    after = [r for r in records if r["index"] > done_at[0]]
    assert len(after) == 4
    assert after[0]["data"]["choices"][0]["delta"]["content"] == " SHOULD NOT PRINT"
    assert after[1] == {**after[1], "data": '{"this is": not json', "json": False}
    assert after[-1]["done"] is True
    assert "4 events after [DONE]" in summary_lines(result.stderr)[3]
    assert result.returncode == 0


@needs_corpus
def test_debug_summary_reports_usage_and_finish():
    result = run_case("usage-chunk-include-usage", "debug", "hi")
    lines = summary_lines(result.stderr)
    assert lines[2] == "  finish_reason stop, [DONE] yes, usage 19 prompt + 7 completion = 26 total"
    assert lines[1].endswith(" tokens/s")


@needs_corpus
def test_debug_comments_only_with_the_flag():
    quiet = run_case("comments-openrouter", "debug", "hi")
    assert all("comment" not in r for r in parse_lines(quiet.stdout))
    loud = run_case("comments-openrouter", "debug", "--comments", "hi")
    comments = [r for r in parse_lines(loud.stdout) if "comment" in r]
    assert [c["comment"] for c in comments] == [" OPENROUTER PROCESSING"] * 7
    # The summary counts them either way.
    assert ", 7 comments, " in summary_lines(quiet.stderr)[0]


@needs_corpus
def test_debug_done_after_an_in_stream_error_is_not_reported_missing():
    result = run_case("llamacpp-error-field", "debug", "hi")
    assert parse_lines(result.stdout)[-1]["done"] is True
    lines = summary_lines(result.stderr)
    assert "[DONE] yes" in lines[2]
    assert "missing [DONE]" not in lines[3]


@needs_corpus
def test_debug_names_the_discarded_unterminated_event():
    result = run_case("trailing-event-without-blank-line", "debug", "hi")
    anomalies = summary_lines(result.stderr)[3]
    assert "unterminated last event discarded" in anomalies
    assert "is lost" in anomalies


PRETTY_LABEL = re.compile(r"^Chunk (\d+) \(\+\d+\.\d ms\)(?: event: \S+)?(?: \[not JSON\])?:$")


def pretty_blocks(text: str) -> list[tuple[str, str]]:
    """(label, dedented body) for each block of --pretty output."""
    blocks: list[tuple[str, list[str]]] = []
    for line in text.split("\n")[:-1]:
        if line.startswith("  "):
            blocks[-1][1].append(line[2:])
        else:
            blocks.append((line, []))
    return [(label, "\n".join(body)) for label, body in blocks]


@needs_corpus
def test_pretty_in_a_pipe_is_plain_blocks_of_indented_json():
    result = run_case("lf-basic", "debug", "--pretty", "hi")
    assert result.returncode == 0
    text = result.stdout.decode()
    assert "\x1b" not in text
    blocks = pretty_blocks(text)
    events = [i for i in reference_items(case_body("lf-basic")) if i[0] == "event"]
    assert len(blocks) == len(events) == 8
    for n, ((label, body), event) in enumerate(zip(blocks, events, strict=True), start=1):
        match = PRETTY_LABEL.match(label)
        assert match and int(match.group(1)) == n, label
        if event[3] == "[DONE]":
            assert body == "[DONE]"
        else:
            assert "\n" in body  # indented, not one line
            assert json.loads(body) == json.loads(event[3])
    assert "\x1b" not in result.stderr.decode()


@needs_corpus
def test_pretty_with_force_color_uses_escapes():
    result = run_case("lf-basic", "debug", "--pretty", "hi", env={"FORCE_COLOR": "1"})
    assert result.returncode == 0
    assert b"\x1b[" in result.stdout
    assert b"Chunk 1 (+" in result.stdout


@needs_corpus
def test_pretty_no_color_beats_force_color():
    result = run_case("lf-basic", "debug", "--pretty", "hi",
                      env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert b"\x1b" not in result.stdout
    assert b"Chunk 1 (+" in result.stdout


@needs_corpus
def test_pretty_shows_comments_and_unknown_fields():
    comments = run_case("comments-openrouter", "debug", "--pretty", "--comments", "hi")
    labels = [label for label, _ in pretty_blocks(comments.stdout.decode())]
    assert sum(label.startswith("Comment (+") for label in labels) == 7
    fields = run_case("llamacpp-error-field", "debug", "--pretty", "hi")
    blocks = pretty_blocks(fields.stdout.decode())
    assert blocks[1][0].startswith("Unknown field 'error' (+")
    assert "exceeds the available context size" in blocks[1][1]
    assert fields.returncode == 65


def test_debug_sends_the_chat_body_with_include_usage(httpserver, key_env):
    serve_stream(httpserver, text_stream("ok"))
    result = run_cli("debug", "-m", "m1", "-t", "0.5", "two", "words", env=key_env)
    assert result.returncode == 0, result.stderr
    (request, _), = httpserver.log
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert orjson.loads(request.get_data()) == {
        "model": "m1", "messages": [{"role": "user", "content": "two words"}],
        "temperature": 0.5, "stream": True, "stream_options": {"include_usage": True},
    }


def test_debug_verbose_shows_the_exchange_with_the_key_redacted(httpserver, key_env):
    serve_stream(httpserver, text_stream("ok"))
    result = run_cli("debug", "-v", "hi", env=key_env)
    assert result.returncode == 0, result.stderr
    assert SECRET.encode() not in result.stdout + result.stderr
    lines = result.stderr.decode().splitlines()
    assert lines[0] == f"> POST {key_env['ASSISTERS_BASE_URL']}/chat/completions"
    assert lines[0].startswith("> POST http://")
    assert "> Authorization: [REDACTED]" in lines
    assert "> Content-Type: application/json" in lines
    sent = [line for line in lines if line.startswith("> {")]
    assert [orjson.loads(line[2:]) for line in sent] == [orjson.loads(httpserver.log[0][0].get_data())]
    assert any(re.match(r"< HTTP/1\.[01] 200\b", line) for line in lines), lines
    assert any(line.lower().startswith("< content-type: text/event-stream") for line in lines)
    assert [line for line in lines if line.startswith("summary: ")]
    assert len(parse_lines(result.stdout)) == 4  # role, "ok", finish, [DONE]


@needs_corpus
def test_debug_verbose_against_the_corpus_server():
    result = run_case("lf-basic", "debug", "-v", "hi")
    lines = result.stderr.decode().splitlines()
    assert lines[0].startswith("> POST http://127.0.0.1:")
    assert "< HTTP/1.1 200 OK" in lines
    assert "> Authorization: [REDACTED]" in lines


def test_debug_without_verbose_shows_no_headers(httpserver, key_env):
    serve_stream(httpserver, text_stream("ok"))
    result = run_cli("debug", "hi", env=key_env)
    assert not [line for line in result.stderr.decode().splitlines() if line[:2] in ("> ", "< ")]


def test_debug_does_not_stop_at_an_unparsable_chunk(httpserver, key_env):
    serve_stream(httpserver, sse(chunk("", role="assistant"), chunk("a"), "data: {bad\n\n",
                                 chunk("b"), chunk(finish="stop")))
    result = run_cli("debug", "hi", env=key_env)
    records = parse_lines(result.stdout)
    check_records(records)
    assert len(records) == 6
    assert without_position(records[2]) == {"event": "message", "data": "{bad", "json": False}
    assert records[3]["data"]["choices"][0]["delta"]["content"] == "b"
    assert records[5] == {**records[5], "data": "[DONE]", "json": False, "done": True}
    lines = summary_lines(result.stderr)
    assert lines[0].startswith("summary: 6 events, 2 content chunks, 0 comments, ")
    assert "1 unparsable data" in lines[3]
    assert lines[-1].startswith("assisters: error: ")
    assert result.returncode == 76


def test_debug_shows_the_events_after_an_in_stream_error(httpserver, key_env):
    serve_stream(httpserver, sse(
        chunk("a"), 'event: error\ndata: {"error": {"message": "boom"}}\n\n', chunk("b"),
        chunk(finish="stop")))
    result = run_cli("debug", "hi", env=key_env)
    records = parse_lines(result.stdout)
    check_records(records)
    assert [r["event"] for r in records] == ["message", "error", "message", "message", "message"]
    assert records[1]["data"] == {"error": {"message": "boom"}}
    assert records[2]["data"]["choices"][0]["delta"]["content"] == "b"
    lines = summary_lines(result.stderr)
    assert "error in stream: boom" in lines[3]
    assert lines[-1] == "assisters: error: boom"
    assert result.returncode == 69


def test_debug_unknown_field_and_id_records(httpserver, key_env):
    serve_stream(httpserver, sse("id: 7\nfoo: bar\n" + "data: " + orjson.dumps(chunk("x")).decode()
                                 + "\n\n", chunk(finish="stop")))
    result = run_cli("debug", "hi", env=key_env)
    records = parse_lines(result.stdout)
    check_records(records)
    assert without_position(records[0]) == {"field": "foo", "value": "bar"}
    assert records[1]["id"] == "7" and records[1]["index"] == 1
    assert records[2]["id"] == "7"  # the last event id carries over
    assert "1 unknown SSE fields" in summary_lines(result.stderr)[3]
    assert result.returncode == 0


def test_debug_missing_done_after_finish_is_an_anomaly_but_succeeds(httpserver, key_env):
    serve_stream(httpserver, sse(chunk("hi"), chunk(finish="stop"), done=False))
    result = run_cli("debug", "hi", env=key_env)
    lines = summary_lines(result.stderr)
    assert lines[2].startswith("  finish_reason stop, [DONE] no, ")
    assert "missing [DONE]" in lines[3]
    assert "warning" in lines[4]
    assert result.returncode == 0


def test_debug_json_reply_is_one_event(httpserver, key_env):
    completion = {"id": "c", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "whole"}, "finish_reason": "stop"}]}
    serve_stream(httpserver, orjson.dumps(completion), content_type="application/json")
    result = run_cli("debug", "hi", env=key_env)
    records = parse_lines(result.stdout)
    assert [without_position(r) for r in records] == [{"event": "message", "data": completion}]
    assert result.returncode == 0


@pytest.mark.parametrize(("status", "exit_status"), [(400, 65), (404, 65), (401, 77), (403, 77),
                                                     (500, 69), (503, 69)])
def test_debug_http_errors_follow_chat(httpserver, key_env, status, exit_status):
    serve_stream(httpserver, b'{"error": {"message": "nope here"}}', status=status,
                 content_type="application/json")
    result = run_cli("debug", "hi", env=key_env)
    assert result.returncode == exit_status
    assert result.stdout == b""
    assert result.stderr.decode().splitlines() == [f"assisters: error: HTTP {status}: nope here"]


def test_replay_as_debug_shows_the_recorded_clock_in_the_events_and_the_summary(tmp_path):
    """Recorded with a 400 ms pause before the first token, replayed as fast as possible:
    the summary's times are the recording's, like the events' ms, not the replay's."""
    from assisters.server.app import ChatServer
    from assisters.server.options import ServeOptions

    save = tmp_path / "slow.jsonl"
    with ChatServer(ServeOptions(first_token_delay_ms=400, tokens_per_second=0)) as server:
        recorded = run_cli("debug", "-m", "echo", "--save", str(save), "one two",
                           env={"ASSISTERS_BASE_URL": server.base_url, "ASSISTERS_API_KEY": SECRET})
    assert recorded.returncode == 0
    replayed = run_cli("replay", "--as", "debug", str(save))
    assert replayed.returncode == 0
    events = [r for r in parse_lines(replayed.stdout) if "index" in r]
    timing = summary_lines(replayed.stderr)[1]
    found = re.fullmatch(r"  time to first byte ([\d.]+) ms, first token ([\d.]+) ms, total ([\d.]+) ms, .*",
                         timing)
    assert found, timing
    first_byte, first_token, total = map(float, found.groups())
    content_ms = [e["ms"] for e in events if isinstance(e["data"], dict)
                  and e["data"]["choices"] and e["data"]["choices"][0]["delta"].get("content")]
    assert first_token == pytest.approx(content_ms[0], abs=0.1)  # the same clock as the events
    assert first_token >= 400 and first_byte <= first_token <= total
    assert total == pytest.approx(events[-1]["ms"], abs=0.1)
