"""A local chat server with a fixed latency per request, for the batch benchmark.

Each request is answered ``latency`` seconds after it arrives, with a short SSE
stream (role chunk, three content chunks, finish, usage, ``[DONE]``), or one JSON
completion when the body does not ask to stream. Head and body go out in ONE
``sendall`` on a ``TCP_NODELAY`` socket: otherwise Nagle's algorithm and delayed
ACKs add about 40 ms to every request and the benchmark measures the server.
A thread per connection, keep-alive; it counts the requests it answered.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import orjson

WORDS = ("Batches", " of", " answers")


def _chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    return b"data: " + orjson.dumps({
        "id": "chatcmpl-batchbench", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": "bench", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"


USAGE = {"prompt_tokens": 5, "completion_tokens": len(WORDS), "total_tokens": 5 + len(WORDS)}
SSE_BODY = b"".join([
    _chunk({"role": "assistant", "content": ""}), *(_chunk({"content": w}) for w in WORDS),
    _chunk({}, "stop"),
    b"data: " + orjson.dumps({"id": "chatcmpl-batchbench", "object": "chat.completion.chunk",
                              "created": 1_700_000_000, "model": "bench", "choices": [],
                              "usage": USAGE}) + b"\n\n",
    b"data: [DONE]\n\n"])
JSON_BODY = orjson.dumps({
    "id": "chatcmpl-batchbench", "object": "chat.completion", "created": 1_700_000_000, "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(WORDS)},
                 "finish_reason": "stop"}], "usage": USAGE})


def _response(body: bytes, kind: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: " + kind + b"\r\nContent-Length: %d\r\n"
            b"x-request-id: req_bench\r\n\r\n" % len(body)) + body


SSE_RESPONSE = _response(SSE_BODY, b"text/event-stream")
JSON_RESPONSE = _response(JSON_BODY, b"application/json")


class BatchServer:
    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.answered = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with contextlib.suppress(OSError), conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                body, buffer = buffer[:length], buffer[length:]
                time.sleep(self.latency)
                conn.sendall(SSE_RESPONSE if b'"stream":true' in body.replace(b" ", b"") else JSON_RESPONSE)
                with self._lock:
                    self.answered += 1

    def close(self) -> None:
        self._sock.close()
