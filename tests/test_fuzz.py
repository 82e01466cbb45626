"""Fuzzing: the decoder, the chunk interpreter and the real ``chat`` command.

* Property tests (hypothesis): arbitrary bytes split arbitrarily decode to the
  same items as one read and never raise; arbitrary JSON payloads and mutated
  real corpus chunks make the interpreter raise nothing but the project's own
  errors; the text shown and the outcome do not depend on how the body was split.
* A mutation run of ``chat`` over the shared corpus: each case's body gets bytes
  flipped, lines dropped, duplicated or swapped, cuts, stray CRs and tokens,
  JSON values replaced, headers changed (a seeded, reproducible mutator); every
  variant is served over loopback by the corpus's own replay server and the
  command must exit with a status from the table, with short ``assisters:``
  diagnostics and never a traceback. Most variants run in this process through
  ``assisters.commands.main``; a few run as real processes.
* The session's key-leak guard (conftest) is shown to catch leaks.

ASSISTERS_SLOW_TESTS=1 runs many more hypothesis examples (2500 per property,
not 100) and 3000 mutated streams; ASSISTERS_FUZZ_EXAMPLES=N sets the number of
mutated streams (default 300, of which 10 run as processes).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import dataclasses
import importlib.util
import io
import itertools
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assisters.answer import Answer
from assisters.errors import AssistersError
from assisters.sinks import usage_line
from assisters.sse import Comment, Event, Field, Item, SSEDecoder
from assisters.stream import ChatResult
from assisters.timing import Timing
from tests.conftest import (
    FUZZ_STATS,
    SECRET,
    SSE_CASES,
    collecting_leaks,
    find_key,
    key_input,
    needs_corpus,
    run_cli,
    run_in_process,
    scan_tree,
    serve_stream,
)

SLOW = bool(os.environ.get("ASSISTERS_SLOW_TESTS"))
EXAMPLES = 2500 if SLOW else 100
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, report_multiple_bugs=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MUTATED_STREAMS = int(os.environ.get("ASSISTERS_FUZZ_EXAMPLES") or (3000 if SLOW else 300))
PROCESS_RUNS = min(MUTATED_STREAMS, max(10, MUTATED_STREAMS // 30))

CASE_PATHS = sorted(SSE_CASES.glob("*.json")) if SSE_CASES.is_dir() else []
CASES: dict[str, dict[str, Any]] = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in CASE_PATHS}


def case_bytes(case: dict[str, Any]) -> bytes:
    if "body_chunks_b64" in case:
        return b"".join(base64.b64decode(c) for c in case["body_chunks_b64"])
    return b"".join(c.encode("utf-8") for c in case.get("body_chunks", []))


def example() -> None:
    FUZZ_STATS["hypothesis examples"] += 1


# -- shared helpers ------------------------------------------------------------


def split(body: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted({min(max(c, 0), len(body)) for c in cuts}), len(body)]
    return [body[a:b] for a, b in itertools.pairwise(points)]


@st.composite
def reads_of(draw: st.DrawFn, body: bytes) -> list[bytes]:
    """``body`` cut into reads: anywhere, around CR and LF, or one byte each;
    sometimes with empty reads between them."""
    how = draw(st.sampled_from(["random", "random", "line-ends", "bytewise", "whole"]))
    if how == "whole" or not body:
        reads = [body]
    elif how == "bytewise" and len(body) <= 4096:
        reads = [body[i : i + 1] for i in range(len(body))]
    else:
        cuts = draw(st.lists(st.integers(0, len(body)), max_size=12))
        if how == "line-ends":
            edges = [i + d for i, b in enumerate(body[:4096]) if b in b"\r\n" for d in (0, 1)]
            if edges:
                cuts += draw(st.lists(st.sampled_from(edges), max_size=20))
        reads = split(body, cuts)
    if draw(st.booleans()):
        reads = [part for r in reads for part in (r, b"")]
    return reads


def decode_all(reads: Iterable[bytes], *, comments: bool) -> tuple[list[Item], int | None, bool]:
    decoder = SSEDecoder(comments=comments)
    out: list[Item] = []
    for data in reads:
        out += decoder.feed(data)
    pending = decoder.pending
    out += decoder.close()
    return out, decoder.retry, pending


Outcome = tuple[Any, ...]


def finish(answer: Answer) -> Outcome:
    """The end of ``chat``: the completion rules, then what --json and -u print.
    Anything but an AssistersError escapes and fails the test."""
    try:
        warnings = answer.outcome(None)
    except AssistersError as exc:
        return ("error", type(exc).__name__, int(exc.status), exc.message)
    completion = answer.completion_object()
    orjson.dumps(completion)
    usage_line(ChatResult(answer=answer, timing=Timing(), warnings=warnings))
    return ("ok", warnings, completion)


def shown(reads: Iterable[bytes]) -> tuple[str, Outcome]:
    """What ``chat`` shows for these reads: text taken after each read as the
    command does, stopping at [DONE] or an error, then the outcome."""
    decoder = SSEDecoder()
    answer = Answer()
    text: list[str] = []
    for data in reads:
        for item in decoder.feed(data):
            answer.apply(item)
            if answer.stopped:
                break
        text.append(answer.take_text())
        if answer.stopped:
            break
    return "".join(text), finish(answer)


# -- the decoder: arbitrary bytes, arbitrary reads ------------------------------

BOM = b"\xef\xbb\xbf"
SSE_TOKENS = [b"\n", b"\r\n", b"\r", b"\n\n", b"data", b"data:", b"data: ", b":", b" ", b"x", b"{}",
              b"[DONE]", b"event", b"event: error\n", b"id", b"id: 1\n", b"\0", b"retry", b"retry: 9",
              b"9", b"\xff", b"\xc0", b"\xf0\x9f", b"\x98\x80", b"\xe2\x80\xa8", BOM, b"error: ", b"\t"]
ANY_BYTES = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(SSE_TOKENS), max_size=60).map(b"".join),
    st.tuples(st.sampled_from([b"", BOM]), st.lists(st.sampled_from(SSE_TOKENS) | st.binary(max_size=4),
                                                    max_size=40)).map(lambda t: t[0] + b"".join(t[1])),
)


@PROPERTY
@given(ANY_BYTES, st.booleans(), st.data())
def test_decoder_any_bytes_any_reads_equal_one_read(raw: bytes, comments: bool, data: st.DataObject) -> None:
    example()
    reads = data.draw(reads_of(raw))
    assert decode_all(reads, comments=comments) == decode_all([raw], comments=comments)


@PROPERTY
@given(ANY_BYTES)
def test_decoder_items_are_well_formed(raw: bytes) -> None:
    example()
    items, retry, _ = decode_all([raw], comments=True)
    for item in items:
        assert type(item) in (Event, Comment, Field)
        assert all(v is None or isinstance(v, str) for v in dataclasses.astuple(item))
    assert retry is None or (isinstance(retry, int) and retry >= 0)


# The fast path (SSEDecoder.feed_data + Answer.apply_items), where present,
# must mean exactly what feed + apply mean.
needs_fast_path = pytest.mark.skipif(
    not (hasattr(SSEDecoder, "feed_data") and hasattr(Answer, "apply_items")),
    reason="no SSEDecoder.feed_data / Answer.apply_items in this version")


def without_ids(items: Iterable[bytes | Item]) -> list[Item]:
    """Items with event ids dropped, and feed_data's bytes as the event they stand for."""
    out: list[Item] = []
    for item in items:
        if isinstance(item, bytes):
            out.append(Event("message", item.decode("utf-8", "replace")))
        elif isinstance(item, Event):
            out.append(Event(item.type, item.data))
        else:
            out.append(item)
    return out


@needs_fast_path
@PROPERTY
@given(ANY_BYTES, st.booleans(), st.data())
def test_decoder_feed_data_means_what_feed_means(raw: bytes, comments: bool, data: st.DataObject) -> None:
    example()
    reads = data.draw(reads_of(raw))
    fast = SSEDecoder(comments=comments)
    items: list[bytes | Item] = []
    for chunk in reads:
        items += fast.feed_data(chunk)  # type: ignore[attr-defined]
    pending = fast.pending
    items += fast.close()
    slow, retry, slow_pending = decode_all([raw], comments=comments)
    assert (without_ids(items), fast.retry, pending) == (without_ids(slow), retry, slow_pending)


# -- the chunk interpreter: arbitrary JSON payloads ------------------------------

KEY_NAMES = ["choices", "delta", "message", "content", "index", "finish_reason", "tool_calls",
             "function", "name", "arguments", "id", "type", "usage", "error", "code", "status",
             "detail", "msg", "role", "reasoning", "reasoning_content", "model", "created",
             "prompt_tokens", "completion_tokens", "total_tokens"]
SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
           | st.sampled_from(["", "[DONE]", "error", "stop", "length", "assistant", "function"]))
JSON = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=4)
    | st.dictionaries(st.sampled_from(KEY_NAMES) | st.text(max_size=4), kids, max_size=5),
    max_leaves=20,
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the expected shape, sometimes any JSON value in its place."""
    return st.one_of(strategy, strategy, JSON)


TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)
INDEX = st.integers(0, 2)
TOOL_CALL = st.fixed_dictionaries({}, optional={
    "index": maybe(INDEX), "id": maybe(st.sampled_from(["call_a", "call_b", ""])),
    "type": maybe(st.just("function")),
    "function": maybe(st.fixed_dictionaries({}, optional={"name": maybe(TEXT), "arguments": maybe(TEXT)})),
})
DELTA = st.fixed_dictionaries({}, optional={
    "role": maybe(st.just("assistant")), "content": maybe(TEXT | st.none()),
    "reasoning_content": maybe(TEXT), "reasoning": maybe(TEXT),
    "tool_calls": maybe(st.lists(maybe(TOOL_CALL), max_size=3) | st.none()),
})
FINISH = st.sampled_from([None, "stop", "length", "error", "content_filter", "tool_calls", "end_turn"])
CHOICE = st.fixed_dictionaries({}, optional={
    "index": maybe(INDEX), "delta": maybe(DELTA), "message": maybe(DELTA), "finish_reason": maybe(FINISH),
})
USAGE = st.fixed_dictionaries({}, optional={k: maybe(st.integers(0, 99)) for k in
                                            ("prompt_tokens", "completion_tokens", "total_tokens")})
ERROR = st.fixed_dictionaries({}, optional={"message": maybe(TEXT), "code": maybe(st.sampled_from(
    [400, 401, 429, 500, 503, 200, 999, "rate_limit"])), "type": maybe(TEXT)})
CHUNK = st.fixed_dictionaries({}, optional={
    "id": maybe(st.just("chatcmpl-x")), "object": maybe(st.just("chat.completion.chunk")),
    "model": maybe(TEXT), "created": maybe(st.integers(0, 2**40)),
    "choices": maybe(st.lists(maybe(CHOICE), max_size=3) | st.none()),
    "usage": maybe(USAGE | st.none()), "error": maybe(ERROR | st.none() | TEXT),
    "message": maybe(TEXT), "detail": maybe(TEXT),
})


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


PAYLOAD = st.one_of(
    CHUNK.map(dumps), CHUNK.map(dumps), CHUNK.map(dumps), JSON.map(dumps),
    st.sampled_from(["[DONE]", "", "not json", "{", "[DONE] and more", "null", "[]"]),
    TEXT,
)
ITEM = st.one_of(
    PAYLOAD.map(lambda data: Event("message", data)),
    PAYLOAD.map(lambda data: Event("message", data)),
    st.builds(Event, st.sampled_from(["error", "delta", "", "ping"]), PAYLOAD),
    st.builds(Field, st.sampled_from(["error", "Data", "foo", '{"error"']), PAYLOAD),
    st.builds(Comment, TEXT),
)


def interpret(items: Iterable[Item]) -> Outcome:
    answer = Answer()
    for item in items:
        answer.apply(item)
    answer.take_text()
    answer.take_reasoning()
    return finish(answer)


@PROPERTY
@given(st.lists(ITEM, max_size=12))
def test_interpreter_raises_only_its_own_errors(items: list[Item]) -> None:
    example()
    interpret(items)


@PROPERTY
@given(JSON | CHUNK | st.fixed_dictionaries({"choices": st.lists(maybe(CHOICE), max_size=3)}))
def test_json_reply_raises_only_its_own_errors(body: Any) -> None:
    """A whole application/json reply goes through apply_completion instead."""
    example()
    answer = Answer()
    try:
        answer.apply_completion(orjson.loads(dumps(body)))
    except AssistersError:
        return
    finish(answer)


# -- mutated real corpus chunks ------------------------------------------------


def corpus_event_lists() -> list[list[Event]]:
    """The events of every corpus case with a small SSE body."""
    found = []
    for case in CASES.values():
        body = case_bytes(case)
        if len(body) > 64 * 1024 or "gzip" in json.dumps(case["http"]).lower():
            continue
        events = [i for i in decode_all([body], comments=False)[0] if isinstance(i, Event)]
        if events:
            found.append(events)
    return found


CORPUS_EVENTS = corpus_event_lists()
CORPUS_BODIES = sorted((name for name, case in CASES.items() if len(case_bytes(case)) <= 64 * 1024))


def slots(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths to every node of a JSON value (the root is the empty path)."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from slots(child, (*path, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from slots(child, (*path, i))


def replaced(value: Any, path: tuple[Any, ...], new: Any, *, delete: bool = False) -> Any:
    if not path:
        return new
    value = copy.deepcopy(value)
    parent = value
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return value


@st.composite
def mutated_payload(draw: st.DrawFn, data: str) -> str:
    try:
        value = json.loads(data)
    except ValueError:
        return data
    for _ in range(draw(st.integers(1, 3))):
        paths = list(slots(value))
        path = draw(st.sampled_from(paths))
        delete = bool(path) and draw(st.integers(0, 4)) == 0
        value = replaced(value, path, draw(JSON) if not delete else None, delete=delete)
    return dumps(value)


@st.composite
def mutated_events(draw: st.DrawFn) -> list[Item]:
    events = draw(st.sampled_from(CORPUS_EVENTS or [[Event("message", "{}")]]))
    out: list[Item] = []
    for event in events:
        action = draw(st.sampled_from(["keep", "keep", "keep", "mutate", "drop", "twice", "error-field"]))
        if action == "drop":
            continue
        if action == "error-field":
            out.append(Field("error", event.data))
            continue
        data = draw(mutated_payload(event.data)) if action == "mutate" else event.data
        out += [Event(event.type, data, event.id)] * (2 if action == "twice" else 1)
    return out


@needs_corpus
@PROPERTY
@given(mutated_events())
def test_interpreter_on_mutated_corpus_chunks(items: list[Item]) -> None:
    example()
    interpret(items)


# -- what is shown does not depend on how the body was split ---------------------


@st.composite
def chunk_bodies(draw: st.DrawFn) -> bytes:
    """An SSE body of generated payloads, with the usual line-end and comment noise."""
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    parts = [draw(st.sampled_from(["", "\ufeff"]))]
    for item in draw(st.lists(ITEM, max_size=8)):
        if isinstance(item, Event):
            kind = f"event: {item.type}{end}" if item.type != "message" else ""
            lines = item.data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            parts.append(kind + "".join(f"data: {line}{end}" for line in lines) + end)
        elif isinstance(item, Field):
            value = item.value.replace("\r", " ").replace("\n", " ")
            parts.append(f"{item.name}: {value}{end}")
        else:
            parts.append(f":{item.text.replace(chr(13), ' ').replace(chr(10), ' ')}{end}")
    if draw(st.booleans()):
        parts.append("data: [DONE]" + end + end)
    return "".join(parts).encode("utf-8")


# Real corpus bodies through the mutator below (none when the corpus is absent).
MUTATED_BODIES = (st.builds(lambda name, seed: mutate_case(CASES[name], seed).body,
                            st.sampled_from(CORPUS_BODIES), st.integers(0, 2**32))
                  if CORPUS_BODIES else st.nothing())
BODIES = chunk_bodies() | MUTATED_BODIES | ANY_BYTES


@PROPERTY
@given(BODIES, st.data())
def test_shown_text_does_not_depend_on_reads(body: bytes, data: st.DataObject) -> None:
    example()
    assert shown(data.draw(reads_of(body))) == shown([body])


def shown_fast(reads: Iterable[bytes]) -> tuple[str, Outcome]:
    """``shown`` through feed_data and apply_items."""
    decoder = SSEDecoder()
    answer = Answer()
    text: list[str] = []
    for data in reads:
        answer.apply_items(decoder.feed_data(data))  # type: ignore[attr-defined]
        text.append(answer.take_text())
        if answer.stopped:
            break
    return "".join(text), finish(answer)


@needs_fast_path
@PROPERTY
@given(BODIES, st.data())
def test_fast_path_shows_what_the_item_path_shows(body: bytes, data: st.DataObject) -> None:
    example()
    reads = data.draw(reads_of(body))
    assert shown_fast(reads) == shown([body])


# -- the mutator -----------------------------------------------------------------

LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
TOKENS = [b"\n", b"\r", b"\r\n", b"\n\n", b"data: ", b"data:", b"data: [DONE]\n\n", b"event: error\n",
          b"error: oops\n", b":", b": ping\n", BOM, b"\xff", b"\xf0\x9f", b"\0", b'{"error":null}',
          b'"', b"{", b"}", b",", b"retry: 5\n", b"id: \0\n", b"\xe2\x80\xa8", b"data\n"]
DEEP = json.loads("[" * 300 + "]" * 300)
WEIRD: list[Any] = [None, True, False, 0, 1, -1, 2, 1.5, 2**64, 1e300, "", "x", "[DONE]", "stop", "error",
                    "\u2028", "😀", [], {}, [0], [None], ["x"], {"index": 0}, {"message": "m"},
                    {"name": 1}, DEEP]
CONTENT_TYPES = ["text/event-stream", "application/json", "text/plain", "text/html",
                 "application/problem+json", "text/event-stream; charset=latin-1", ""]


@dataclass
class Variant:
    name: str
    body: bytes
    http: dict[str, Any]
    transport_end: str
    close_delimited: bool
    ops: list[str] = field(default_factory=list)
    length_lie: bool = False

    def case(self, writes: list[bytes]) -> dict[str, Any]:
        http = copy.deepcopy(self.http)
        headers = http.setdefault("headers", {})
        for key in list(headers):
            if key.lower() == "content-length" and not self.length_lie:
                headers[key] = str(len(self.body))
        return {"name": self.name, "category": "fuzz", "http": http, "transport_end": self.transport_end,
                "close_delimited": self.close_delimited,
                "body_chunks_b64": [base64.b64encode(w).decode() for w in writes],
                "expect": {"ops": self.ops}}


def _lines(body: bytes) -> list[bytes]:
    return LINE.findall(body)


def op_flip(v: Variant, rng: random.Random) -> str:
    if not v.body:
        return "flip (empty)"
    body = bytearray(v.body)
    spots = [rng.randrange(len(body)) for _ in range(rng.randint(1, 4))]
    for at in spots:
        body[at] ^= 1 << rng.randrange(8) if rng.random() < 0.7 else rng.randrange(1, 256)
    v.body = bytes(body)
    return f"flip@{spots}"


def op_drop_line(v: Variant, rng: random.Random) -> str:
    lines = _lines(v.body)
    if not lines:
        return "drop (empty)"
    at = rng.randrange(len(lines))
    del lines[at]
    v.body = b"".join(lines)
    return f"drop-line#{at}"


def op_dup_line(v: Variant, rng: random.Random) -> str:
    lines = _lines(v.body)
    if not lines:
        return "dup (empty)"
    at = rng.randrange(len(lines))
    lines.insert(at, lines[at])
    v.body = b"".join(lines)
    return f"dup-line#{at}"


def op_swap_lines(v: Variant, rng: random.Random) -> str:
    lines = _lines(v.body)
    if len(lines) < 2:
        return "swap (short)"
    at = rng.randrange(len(lines) - 1)
    lines[at], lines[at + 1] = lines[at + 1], lines[at]
    v.body = b"".join(lines)
    return f"swap-lines#{at}"


def op_cut(v: Variant, rng: random.Random) -> str:
    at = rng.randint(0, len(v.body))
    v.body = v.body[:at]
    v.transport_end = rng.choice(["complete", "abort"])
    return f"cut@{at}/{v.transport_end}"


def op_insert_cr(v: Variant, rng: random.Random) -> str:
    at = rng.randint(0, len(v.body))
    v.body = v.body[:at] + b"\r" + v.body[at:]
    return f"cr@{at}"


def op_insert_token(v: Variant, rng: random.Random) -> str:
    token = rng.choice(TOKENS)
    lines = _lines(v.body)
    if lines and rng.random() < 0.5:  # at the start of a line
        at = sum(len(line) for line in lines[: rng.randrange(len(lines) + 1)])
    else:
        at = rng.randint(0, len(v.body))
    v.body = v.body[:at] + token + v.body[at:]
    return f"insert{token!r}@{at}"


def op_delete_span(v: Variant, rng: random.Random) -> str:
    at = rng.randint(0, len(v.body))
    size = rng.randint(1, 16)
    v.body = v.body[:at] + v.body[at + size :]
    return f"delete@{at}+{size}"


def _mutate_json(value: Any, rng: random.Random) -> tuple[Any, str]:
    paths = list(slots(value))
    path = rng.choice(paths)
    if path and rng.random() < 0.2:
        return replaced(value, path, None, delete=True), f"del {list(path)}"
    new = rng.choice(WEIRD)
    return replaced(value, path, new, delete=False), f"{list(path)}={'DEEP' if new is DEEP else new!r}"


def op_json_value(v: Variant, rng: random.Random) -> str:
    lines = _lines(v.body)
    candidates = [i for i, line in enumerate(lines) if line.startswith(b"data:") and b"{" in line]
    if not candidates:
        try:
            value = json.loads(v.body)
        except ValueError:
            return op_flip(v, rng)
        value, what = _mutate_json(value, rng)
        v.body = json.dumps(value).encode()
        return f"json {what}"
    at = rng.choice(candidates)
    line = lines[at]
    text = line.rstrip(b"\r\n")
    try:
        value = json.loads(text[5:])
    except ValueError:
        return op_flip(v, rng)
    value, what = _mutate_json(value, rng)
    encoded = json.dumps(value, ensure_ascii=rng.random() < 0.5, separators=(",", ":")).encode()
    lines[at] = b"data: " + encoded + line[len(text) :]
    v.body = b"".join(lines)
    return f"json#{at} {what}"


def op_header(v: Variant, rng: random.Random) -> str:
    headers = v.http.setdefault("headers", {})
    if any(k.lower() == "content-length" for k in headers) and rng.random() < 0.5:
        v.length_lie = True
        for key in list(headers):
            if key.lower() == "content-length":
                headers[key] = str(max(0, len(v.body) + rng.choice([-7, -1, 1, 50])))
        return "content-length-lie"
    kind = rng.choice(CONTENT_TYPES)
    for key in list(headers):
        if key.lower() == "content-type":
            del headers[key]
    if kind:
        headers["Content-Type"] = kind
    return f"content-type={kind!r}"


OPS: list[tuple[Callable[[Variant, random.Random], str], int]] = [
    (op_flip, 3), (op_drop_line, 2), (op_dup_line, 2), (op_swap_lines, 1), (op_cut, 2),
    (op_insert_cr, 1), (op_insert_token, 2), (op_delete_span, 1), (op_json_value, 3), (op_header, 1),
]


def mutate_case(case: dict[str, Any], index: int) -> Variant:
    """Variant ``index`` of a case: the same every run (seeded by name and index)."""
    rng = random.Random(f"{case['name']}#{index}")
    variant = Variant(f"{case['name']}#{index}", case_bytes(case), copy.deepcopy(case["http"]),
                      case.get("transport_end", "complete"), bool(case.get("close_delimited")))
    count = 1 + (rng.random() < 0.4) + (rng.random() < 0.15)
    functions, weights = zip(*OPS, strict=True)
    for op in rng.choices(functions, weights, k=count):
        variant.ops.append(op(variant, rng))
    return variant


def writes_for(variant: Variant, index: int) -> list[bytes]:
    """The network writes: a few random ones, sometimes one byte each."""
    rng = random.Random(f"{variant.name}/writes/{index}")
    body = variant.body
    if len(body) <= 2048 and rng.random() < 0.15:
        return [body[i : i + 1] for i in range(len(body))]
    count = rng.choice([1, 2, 3, 5, 8, 20])
    return [w for w in split(body, [rng.randint(0, len(body)) for _ in range(count - 1)]) if w]


# -- serving variants ------------------------------------------------------------


class Replay:
    """The corpus's replay server (serve_case.py, imported from ../shared, not
    copied) in a thread of this process, serving one variant at a time."""

    def __init__(self, folder: Path) -> None:
        spec = importlib.util.spec_from_file_location("serve_case", SSE_CASES / "serve_case.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.module = module
        self.folder = folder
        self.errors: list[str] = []
        errors = self.errors

        class QuietServer(module.Server):  # type: ignore[name-defined,misc]
            def handle_error(self, request: Any, client_address: Any) -> None:
                errors.append(traceback.format_exc())

        opts = argparse.Namespace(delay_ms=0.0, verbose=False, record=None, count=0, any_path=False)
        self.server = QuietServer(("127.0.0.1", 0), module.Case(SSE_CASES / "lf-basic.json"), opts)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def serve(self, case: dict[str, Any], file_name: str = "variant.json") -> Path:
        path = self.folder / file_name
        path.write_text(json.dumps(case), encoding="utf-8")
        with contextlib.redirect_stderr(io.StringIO()):  # "Content-Length ... but body has" notes
            self.server.case = self.module.Case(path)
        return path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    server = Replay(tmp_path_factory.mktemp("fuzz-cases"))
    yield server
    server.close()
    assert not server.errors, server.errors[0]


# -- running chat on a variant -----------------------------------------------------

OK_STATUSES = {0, 65, 69, 75, 76, 77}
STDERR_PREFIXES = ("assisters: ", "warning: ", "usage: ")
SLOW_RUN_S = 8.0  # below the 10 s timeouts: a hang shows as slow, not as exit 75


def chat_args(index: int) -> list[str]:
    extra = {1: ["--json"], 3: ["-u"]}.get(index % 4, [])
    return ["chat", *extra, "hi"]


def chat_env(base_url: str, index: int) -> dict[str, str]:
    env = {"ASSISTERS_BASE_URL": base_url, "ASSISTERS_API_KEY": SECRET,
           # A variant never needs a timeout (the server always closes); these only
           # bound a hang. No retries by default: they would only repeat the variant.
           "ASSISTERS_TIMEOUT": "10", "ASSISTERS_FIRST_BYTE_TIMEOUT": "10", "ASSISTERS_MAX_RETRIES": "0"}
    if index % 8 == 5:  # some with one quick retry and resuming allowed
        env.update(ASSISTERS_MAX_RETRIES="1", ASSISTERS_MAX_RETRY_WAIT="0.05", ASSISTERS_MAX_TOTAL_WAIT="0.1",
                   ASSISTERS_RESUME="1")
    return env


def problems(result: subprocess.CompletedProcess[bytes], args: list[str], seconds: float,
             max_lines: int) -> list[str]:
    found = []
    status = result.returncode
    stderr = result.stderr.decode("utf-8", "replace")
    lines = re.split(r"\r\n|\r|\n", stderr)  # what breaks a line on a terminal
    if lines[-1] == "":
        lines.pop()
    if status not in OK_STATUSES:
        found.append(f"exit status {status}")
    if "Traceback" in stderr:
        found.append("a traceback on stderr")
    if "internal error" in stderr:
        found.append("an internal error")
    if len(lines) > max_lines:
        found.append(f"{len(lines)} lines on stderr")
    stray = [line for line in lines if not line.startswith(STDERR_PREFIXES)]
    if stray:
        found.append(f"stderr line not from assisters: {stray[0][:100]!r}")
    if status != 0 and not any(line.startswith("assisters: ") for line in lines):
        found.append("a failure without an 'assisters:' line saying why")
    try:
        result.stdout.decode("utf-8")
    except UnicodeDecodeError:
        found.append("stdout is not UTF-8")
    if "--json" in args:
        if status == 0:
            try:
                assert isinstance(orjson.loads(result.stdout), dict)
            except (orjson.JSONDecodeError, AssertionError):
                found.append(f"--json printed {result.stdout[:80]!r}")
        elif result.stdout:  # a failure after events: the object so far, marked with the failure
            try:
                error = orjson.loads(result.stdout).get("error")
            except (orjson.JSONDecodeError, AttributeError):
                error = None
            if not isinstance(error, dict) or error.get("status") != status:
                found.append(f"--json printed {result.stdout[:80]!r} for a failure, not its object so far")
    if find_key(result.stdout + result.stderr):
        found.append("the API key was printed")
    if seconds > SLOW_RUN_S:
        found.append(f"took {seconds:.1f} s")
    return found


def describe(variant: Variant, args: list[str], result: subprocess.CompletedProcess[bytes] | None,
             found: list[str], saved: Path) -> str:
    stderr = result.stderr.decode("utf-8", "replace").strip()[-600:] if result else ""
    return (f"{variant.name} [{', '.join(variant.ops)}] `assisters {' '.join(args)}`: {'; '.join(found)}\n"
            f"    stderr: {stderr}\n"
            f"    replay: python {SSE_CASES / 'serve_case.py'} {saved} --port 8123 &  "
            f"ASSISTERS_BASE_URL=http://127.0.0.1:8123/v1 ASSISTERS_API_KEY=x assisters {' '.join(args)}")


def run_variant(replay: Replay, name: str, index: int, *, as_process: bool) -> str | None:
    variant = mutate_case(CASES[name], index)
    case = variant.case(writes_for(variant, index))
    replay.serve(case)
    args = chat_args(index)
    env = chat_env(replay.base_url, index)
    started = time.perf_counter()
    if as_process:
        try:
            result = run_cli(*args, env=env, timeout=60)
        except subprocess.TimeoutExpired:
            result, found = None, ["no exit within 60 s"]
        FUZZ_STATS["process runs"] += 1
    else:
        result = run_in_process(*args, env=env)
    seconds = time.perf_counter() - started
    FUZZ_STATS["mutated streams"] += 1
    if result is not None:
        found = problems(result, args, seconds, max_lines=8 if index % 8 == 5 else 4)
    if not found:
        return None
    saved = replay.serve(case, f"failed-{name}-{index}.json")
    return describe(variant, args, result, found, saved)


def share(names: list[str], total: int) -> dict[str, list[int]]:
    """Variant indexes per case: ``total`` spread evenly over the cases."""
    per: dict[str, list[int]] = {name: [] for name in names}
    for n in range(total):
        per[names[n % len(names)]].append(n // len(names) + 1)
    return per


IN_PROCESS = share(sorted(CASES), MUTATED_STREAMS - PROCESS_RUNS) if CASES else {}


@needs_corpus
@pytest.mark.parametrize("name", sorted(IN_PROCESS))
def test_mutated_corpus_stream_in_process(replay: Replay, name: str) -> None:
    failures = [f for index in IN_PROCESS[name] if (f := run_variant(replay, name, index, as_process=False))]
    assert not failures, f"{len(failures)} of {len(IN_PROCESS[name])} variants:\n" + "\n".join(failures)


@needs_corpus
def test_mutated_corpus_streams_as_real_processes(replay: Replay) -> None:
    rng = random.Random("process runs")
    names = sorted(CASES)
    picks = [(rng.choice(names), 1_000_000 + n) for n in range(PROCESS_RUNS)]
    failures = [f for name, index in picks if (f := run_variant(replay, name, index, as_process=True))]
    assert not failures, f"{len(failures)} of {len(picks)} variants:\n" + "\n".join(failures)


# -- the harness itself: unmutated cases give what the corpus expects ----------------


@needs_corpus
@pytest.mark.parametrize("name", ["lf-basic", "cut-midstream-abort", "http-401-invalid-key",
                                  "gzip-encoded-sse", "content-length-framed", "close-delimited",
                                  "done-missing-after-finish-reason"])
def test_harness_serves_unmutated_cases_as_the_corpus_says(replay: Replay, name: str) -> None:
    case = CASES[name]
    replay.serve(case)
    result = run_in_process("chat", "hi", env=chat_env(replay.base_url, 0))
    assert result.stdout == case["expect"]["stdout"].encode()
    assert (result.returncode == 0) == (case["expect"]["exit"] == "ok"), result.stderr
    for needle in case["expect"].get("stderr_contains", []):
        assert needle.lower() in result.stderr.decode().lower()
    assert not problems(result, ["chat", "hi"], 0.0, max_lines=1)


def test_mutator_is_deterministic_and_mutates() -> None:
    case = {"name": "t", "http": {"status": 200, "headers": {"Content-Length": "34"}},
            "body_chunks": ['data: {"choices":[{"index":0}]}\n\n']}
    variants = [mutate_case(case, i) for i in range(40)]
    assert [v.body for v in variants] == [mutate_case(case, i).body for i in range(40)]
    assert sum(v.body != case_bytes(case) for v in variants) >= 30
    assert all(v.ops for v in variants)
    honest = [v for v in variants if not v.length_lie]
    assert honest
    assert all(v.case([v.body])["http"]["headers"]["Content-Length"] == str(len(v.body)) for v in honest)


def test_problems_catch_what_the_run_must_never_show() -> None:
    """The fuzz run's check is not vacuous."""
    def result(status: int, stderr: bytes, stdout: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess([], status, stdout, stderr)

    assert problems(result(0, b""), ["chat", "hi"], 0.1, 4) == []
    assert problems(result(75, b"assisters: error: cut\n"), ["chat", "hi"], 0.1, 4) == []
    assert problems(result(1, b"assisters: internal error: TypeError: x\n"), ["chat"], 0.1, 4)
    assert problems(result(69, b"Traceback (most recent call last):\n"), ["chat"], 0.1, 4)
    assert problems(result(-9, b""), ["chat"], 0.1, 4)
    assert problems(result(69, b"assisters: a\n" * 5), ["chat"], 0.1, 4)
    assert problems(result(0, b"", b"not json"), ["chat", "--json"], 0.1, 4)
    assert problems(result(0, b"", SECRET.encode()), ["chat"], 0.1, 4)
    assert problems(result(0, b""), ["chat"], 9.0, 4)


# -- cli bugs the fuzzing found (minimal reproductions) ------------------------------

# Each of these is a payload a server (or a proxy) can send; the interpreter must
# turn it into a result or one of the project's errors, never a TypeError.
BUG_PAYLOADS = {
    "choices-is-a-number": ['{"choices":2}'],
    "choice-index-is-a-list": ['{"choices":[{"index":[1],"delta":{"content":"a"}}]}'],
    "tool-call-index-is-a-list": ['{"choices":[{"index":0,"delta":{"tool_calls":[{"index":[0]}]}}]}'],
    "tool-call-name-not-a-string": [
        '{"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"name":5}}]}}]}'],
    "error-nested-300-deep": ['{"error":' + "[" * 300 + "]" * 300 + "}"],
}


@pytest.mark.parametrize("name", sorted(BUG_PAYLOADS))
def test_found_payload_is_not_an_internal_error(name: str) -> None:
    interpret([Event("message", data) for data in BUG_PAYLOADS[name]] + [Event("message", "[DONE]")])


def test_found_mixed_choice_index_types_with_json_output() -> None:
    """--json sorts the choices by index: an index "1" beside 0 must not crash it."""
    interpret([Event("message", '{"choices":[{"index":0,"delta":{"content":"a"}}]}'),
               Event("message", '{"choices":[{"index":"1","delta":{"content":"b"}}]}'),
               Event("message", "[DONE]")])


def test_found_usage_not_an_object_with_usage_line() -> None:
    """-u reads usage.get(...): a usage that is a number or a string must not crash it."""
    interpret([Event("message", '{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}],'
                                '"usage":5}'), Event("message", "[DONE]")])


@pytest.mark.parametrize("body", [
    b"event: error\ndata: first line\ndata: second line\n\n",
    b'data: {"error":{"message":"first line\\nsecond line"}}\n\n',
    b'data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop\\nnow"}]}\n\n',
], ids=["event-error-with-two-data-lines", "error-message-with-a-newline", "finish-reason-with-a-newline"])
def test_found_server_text_with_newlines_keeps_stderr_messages_one_line(
        httpserver: Any, key_env: dict[str, str], body: bytes) -> None:
    serve_stream(httpserver, body)
    result = run_in_process("chat", "hi", env={**key_env, "ASSISTERS_MAX_RETRIES": "0"})
    assert problems(result, ["chat", "hi"], 0.0, max_lines=1) == [], result.stderr


# -- the session's key-leak guard catches leaks ---------------------------------------


def test_leak_scanner_finds_every_form_of_the_key() -> None:
    raw = SECRET.encode()
    assert find_key(b"nothing to see") == []
    assert find_key(b"x " + raw + b" y") == ["raw"]
    for prefix in (b"", b"a", b"ab", b"Bearer "):
        assert find_key(base64.b64encode(prefix + raw + b"!")) == ["base64"]
        assert find_key(base64.urlsafe_b64encode(prefix + raw + b"\xff\xfe")) == ["base64"]
    assert find_key(b"https://h/?key=" + quote(SECRET, safe="").encode())
    assert find_key(raw.hex().encode()) == ["hex"]
    assert find_key(raw[:-1] + b"X") == []  # a different key is not this one


def test_leak_guard_records_process_and_clirunner_output() -> None:
    with collecting_leaks() as leaks:
        subprocess.run([sys.executable, "-c", f"import sys; sys.stderr.write({SECRET!r})"],
                       capture_output=True, check=True)
        subprocess.run([sys.executable, "-c", "print('clean')"], capture_output=True, check=True)
        # The key as an option value is not prompt text: its stdout is still scanned.
        subprocess.run([sys.executable, "-c", "import sys; print(sys.argv[2])", "--api-key", SECRET],
                       capture_output=True, check=True)
        # Typed into the prompt of assisters, the key may come back on stdout (the echo
        # model); any other program printing it is a leak.
        # (--no-store: no key is in use here, so nothing could know the text is one.)
        echoed = run_cli("chat", "--base-url", "local", "--no-store", "-m", "echo", f"my key is {SECRET}")
        assert SECRET.encode() in echoed.stdout
        subprocess.run([sys.executable, "-c", "import sys; print(sys.argv[1])", f"my key is {SECRET}"],
                       capture_output=True, check=True)

        @click.command()
        def leaky() -> None:
            click.echo(base64.b64encode(f"Bearer {SECRET}".encode()))

        from click.testing import CliRunner

        CliRunner().invoke(leaky, [])
    assert [(leak.stream, leak.form) for leak in leaks] == [("stderr", "raw"), ("stdout", "raw"),
                                                           ("stdout", "raw"), ("stdout", "base64")]
    assert "--api-key" in leaks[1].source
    assert "my key is" in leaks[2].source
    assert "CliRunner leaky" in leaks[3].source
    assert all(leak.test.endswith("test_leak_guard_records_process_and_clirunner_output") for leak in leaks)


def test_leak_guard_scans_files_but_not_inputs() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "rec.jsonl").write_text(json.dumps({"headers": [["Authorization", f"Bearer {SECRET}"]]}))
        (root / "cache").mkdir()
        (root / "cache" / "models.json").write_bytes(base64.b64encode(b"?" + SECRET.encode()))
        (root / "config.toml").write_text(f'api_key = "{SECRET}"\n')
        key_input(root / "prompt.txt").write_text(SECRET)
        (root / "clean.log").write_text("nothing\n")
        found = {(Path(leak.source).name, leak.form) for leak in scan_tree(root)}
    assert found == {("rec.jsonl", "raw"), ("models.json", "base64")}
