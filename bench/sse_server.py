"""A fast local OpenAI-style SSE server for the benchmark.

It answers ``POST .../chat/completions`` with a chat completion stream framed as
real servers frame it: ``Transfer-Encoding: chunked``, one HTTP chunk per SSE
event (``data: {chat.completion.chunk}`` then a blank line), a finish chunk, a
usage chunk and ``data: [DONE]``. The model name chooses the stream:

* ``bench-N``: N word tokens, as fast as the socket takes them. The body is
  built once per N and sent with ``sendall`` in large batches (many HTTP chunks
  per write), so serving costs next to nothing and the client is what is timed.
* ``paced-N-MS``: N tokens ``t0000 ``, ``t0001 ``... one chunk per write, MS
  milliseconds apart, the first MS after the response head. The time of each
  write is recorded (``time.monotonic_ns``, the clock the bench reads stdout
  with), so the bench can compute the delay from write to the client's stdout.

Every request's arrival time (first byte of the request) is recorded too. The
server is a plain socket server with a thread per connection; connections are
kept alive until the client closes them.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from dataclasses import dataclass, field

import orjson

WORDS = (
    " the", " quick", " brown", " fox", " jumps", " over", " a", " lazy", " dog", ",", " and",
    " then", " it", " runs", " back", " to", " its", " den", ".", " Streams", " of", " short",
    " tokens", " are", " what", " chat", " models", " send", ":", " one", " word", " at", " time",
)
BATCH = 1 << 20  # bytes per sendall for unpaced streams
CREATED = 1_700_000_000
_MODEL = re.compile(r"(?:bench-(\d+)|paced-(\d+)-(\d+(?:\.\d+)?))\Z")


def tokens(count: int) -> list[str]:
    """The content tokens of model ``bench-<count>``."""
    return [WORDS[i % len(WORDS)] for i in range(count)]


def paced_tokens(count: int) -> list[str]:
    """The content tokens of model ``paced-<count>-MS``: unique markers the reader can find."""
    return [f"t{i:04d} " for i in range(count)]


def _chunk(model: str, delta: dict[str, str], finish: str | None = None) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-bench0001",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    })


def sse(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def frame(event: bytes) -> bytes:
    """One HTTP/1.1 chunk holding one event."""
    return b"%x\r\n%s\r\n" % (len(event), event)


def content_events(model: str, contents: list[str]) -> list[bytes]:
    """The SSE events (unframed) of content tokens; one template per distinct token."""
    cache: dict[str, bytes] = {}
    for text in set(contents):
        cache[text] = sse(_chunk(model, {"content": text}))
    return [cache[text] for text in contents]


def opening_event(model: str) -> bytes:
    return sse(_chunk(model, {"role": "assistant", "content": ""}))


def closing_events(model: str, count: int) -> list[bytes]:
    """Finish chunk, usage chunk, [DONE]."""
    usage = orjson.dumps({
        "id": "chatcmpl-bench0001",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": count, "total_tokens": count + 9},
    })
    return [sse(_chunk(model, {}, "stop")), sse(usage), b"data: [DONE]\n\n"]


def stream_events(model: str, contents: list[str]) -> list[bytes]:
    """Every event of a stream, in order, unframed."""
    return [opening_event(model), *content_events(model, contents), *closing_events(model, len(contents))]


HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
)
LAST_CHUNK = b"0\r\n\r\n"


@dataclass
class Request:
    """One request as the server saw it (times from ``time.monotonic_ns``)."""

    arrival_ns: int
    model: str
    writes_ns: list[int] = field(default_factory=list)  # paced streams: one per content token
    done_ns: int | None = None  # when the last byte was handed to the socket


class SSEServer:
    """Serve until :meth:`close`; ``requests`` lists every request in arrival order."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._sock = socket.create_server((host, 0), backlog=64)
        self.port: int = self._sock.getsockname()[1]
        self.base_url = f"http://{host}:{self.port}/v1"
        self.requests: list[Request] = []
        self._bodies: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="sse-accept", daemon=True)

    def __enter__(self) -> SSEServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def body(self, model: str) -> bytes:
        """The whole framed body of an unpaced model (built once, then cached)."""
        with self._lock:
            cached = self._bodies.get(model)
            if cached is None:
                match = _MODEL.match(model)
                if not match or not match.group(1):
                    raise ValueError(f"not an unpaced bench model: {model!r}")
                events = stream_events(model, tokens(int(match.group(1))))
                cached = self._bodies[model] = b"".join(map(frame, events)) + LAST_CHUNK
            return cached

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = b""
        try:
            while True:
                data = pending or conn.recv(65536)
                if not data:
                    return
                arrival = time.monotonic_ns()
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        return
                    data += more
                head, _, rest = data.partition(b"\r\n\r\n")
                length = _content_length(head)
                while len(rest) < length:
                    more = conn.recv(65536)
                    if not more:
                        return
                    rest += more
                body, pending = rest[:length], rest[length:]
                self._respond(conn, head, body, arrival)
        except OSError:
            pass
        finally:
            conn.close()

    def _respond(self, conn: socket.socket, head: bytes, body: bytes, arrival: int) -> None:
        request_line = head.split(b"\r\n", 1)[0].split()
        model = ""
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
            model = str(orjson.loads(body).get("model", ""))
        match = _MODEL.match(model)
        if request_line[:1] != [b"POST"] or not request_line[1].endswith(b"/chat/completions") or not match:
            message = b'{"error":{"message":"POST /v1/chat/completions with model bench-N or paced-N-MS"}}'
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(message), message))
            return
        record = Request(arrival, model)
        with self._lock:
            self.requests.append(record)
        if match.group(1):
            view = memoryview(HEAD + self.body(model))
            for start in range(0, len(view), BATCH):
                conn.sendall(view[start:start + BATCH])
        else:
            self._paced(conn, record, int(match.group(2)), float(match.group(3)) / 1000)
        record.done_ns = time.monotonic_ns()

    def _paced(self, conn: socket.socket, record: Request, count: int, interval: float) -> None:
        model = record.model
        chunks = [frame(e) for e in content_events(model, paced_tokens(count))]
        tail = b"".join(map(frame, closing_events(model, count))) + LAST_CHUNK
        conn.sendall(HEAD + frame(opening_event(model)))
        start = time.monotonic()
        for index, chunk in enumerate(chunks, 1):
            delay = start + index * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            record.writes_ns.append(time.monotonic_ns())
            conn.sendall(chunk)
        conn.sendall(tail)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0
