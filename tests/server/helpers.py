"""What the server tests share: requests, and reading SSE bodies back."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx

from assisters.server.app import ChatServer

KEY = "sk-server-test-KEY-never-logged"


TRICKY = "héllo  wörld\n\n\ttabs 🎉 emoji\u2028line-sep\r\nCRLF \u0085nel  trailing  "


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def post(client: httpx.Client, srv: ChatServer, body: dict[str, Any]) -> httpx.Response:
    return client.post(f"{srv.base_url}/chat/completions", json=body)


def stream_raw(client: httpx.Client, srv: ChatServer, body: dict[str, Any]) -> bytes:
    """The whole streamed body; raises if the server cut it short."""
    with client.stream("POST", f"{srv.base_url}/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["transfer-encoding"] == "chunked"
        return r.read()


def events(raw: bytes) -> list[str]:
    """The data of each SSE event (compact JSON never holds a raw newline)."""
    pieces = raw.split(b"\n\n")
    assert pieces[-1] == b"", "body must end with a blank line"
    assert all(p.startswith(b"data: ") for p in pieces[:-1])
    return [p[len(b"data: ") :].decode() for p in pieces[:-1]]


def chunks(raw: bytes) -> list[dict[str, Any]]:
    data = events(raw)
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def contents(objs: list[dict[str, Any]], index: int = 0) -> list[str]:
    return [
        c["delta"]["content"]
        for o in objs
        for c in o["choices"]
        if c["index"] == index and "content" in c["delta"] and "role" not in c["delta"]
    ]


def assert_openai_error(r: httpx.Response, status: int, fragment: str) -> dict[str, Any]:
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert fragment in error["message"]
    return error


def timed_events(
    client: httpx.Client, srv: ChatServer, body: dict[str, Any]
) -> list[tuple[float, str]]:
    """Each event with the monotonic time it arrived, measured from the request start."""
    start = time.monotonic()
    out: list[tuple[float, str]] = []
    buffer = b""
    with client.stream("POST", f"{srv.base_url}/chat/completions", json=body) as r:
        for piece in r.iter_raw():
            buffer += piece
            *complete, buffer = buffer.split(b"\n\n")
            out += [(time.monotonic() - start, e.decode().removeprefix("data: ")) for e in complete]
    return out


CONTINUE = {"continue_final_message": True, "add_generation_prompt": False}


PROMPT = "naïve café 日本語 text,  two  spaces\n"


def resumed(text: str, prefix: str, **fields: Any) -> dict[str, Any]:
    """A request continuing ``prefix`` as the answer to ``text`` (the way vLLM is asked)."""
    messages = [*user(text), {"role": "assistant", "content": prefix}]
    return {"model": "echo", "messages": messages, **CONTINUE, **fields}


def answer(client: httpx.Client, srv: ChatServer, body: dict[str, Any]) -> tuple[str, str]:
    """The streamed text and finish_reason of one complete answer."""
    objs = chunks(stream_raw(client, srv, {**body, "stream": True}))
    finishes = [c["finish_reason"] for o in objs for c in o["choices"] if c["finish_reason"]]
    return "".join(contents(objs)), finishes[-1]


def read_until_cut(
    client: httpx.Client, srv: ChatServer, body: dict[str, Any]
) -> tuple[bytes, list[bytes], Exception | None]:
    """The body bytes that arrived, the pieces they came in, and the error that ended them."""
    pieces: list[bytes] = []
    try:
        with client.stream("POST", f"{srv.base_url}/chat/completions", json=body) as r:
            assert r.status_code == 200
            for piece in r.iter_raw():
                pieces.append(piece)
    except httpx.TransportError as exc:
        return b"".join(pieces), pieces, exc
    return b"".join(pieces), pieces, None


def printed(raw: bytes) -> str:
    """The text a client prints from a cut body: the content of its complete events."""
    complete = raw[: raw.rfind(b"\n\n") + 2] if b"\n\n" in raw else b""
    objs = [json.loads(e) for e in events(complete) if e != "[DONE]"]
    return "".join(contents(objs))


def masked(raw: bytes) -> bytes:
    """``raw`` with ids and created times (the only parts that differ) masked, lengths kept."""
    raw = re.sub(rb"chatcmpl-[0-9a-f]+", lambda m: b"#" * len(m[0]), raw)
    return re.sub(rb'(?<="created":)[0-9]+', lambda m: b"0" * len(m[0]), raw)


RESUME_CASES = [
    ("echo", {"drop_after": 0}),
    ("echo", {"drop_after": 1}),
    ("echo", {"drop_after": 3}),
    ("echo", {"drop_after": 7}),  # every token got through: only the end is missing
    ("lorem", {"drop_after": 5}),
    ("lorem", {"drop_after_bytes": 700}),
]


def batch_lines(*lines: dict[str, Any]) -> bytes:
    """A Batch input file: one JSON object per line."""
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def request_line(custom_id: str, text: str, *, model: str = "echo", url: str = "/v1/chat/completions",
                 **body: Any) -> dict[str, Any]:
    """One OpenAI Batch request line asking ``model`` about ``text``."""
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": model, "messages": user(text), **body}}


ENDED = ("completed", "failed", "expired", "cancelled")


def wait_for_batch(sdk: Any, batch_id: str, statuses: tuple[str, ...] = ENDED, seen: list[str] | None = None,
                   limit: float = 60.0) -> Any:
    """Poll until the batch is in one of ``statuses``; ``seen`` collects every status met.
    ``limit`` only keeps a broken server from hanging the suite."""
    deadline = time.monotonic() + limit
    while True:
        batch = sdk.batches.retrieve(batch_id)
        if seen is not None and (not seen or seen[-1] != batch.status):
            seen.append(batch.status)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status}"
        time.sleep(0.02)
