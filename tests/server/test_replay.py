"""``serve --replay`` and the raw SSE splitting it uses.

Over real loopback sockets. Timing is only ever checked with a generous lower
bound, never an upper one, so a slow machine cannot make them flaky.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from assisters.server.replay import split_events
from tests.server.helpers import stream_raw, user


def test_split_events_keeps_every_byte() -> None:
    raw = b"data: 1\n\ndata: 2\r\n\r\n: c\rdata: 3\r\rtail"
    assert split_events(raw) == [b"data: 1\n\n", b"data: 2\r\n\r\n", b": c\rdata: 3\r\r", b"tail"]


def test_replay_sends_file_bytes(client: httpx.Client, tmp_path: Path) -> None:
    recording = tmp_path / "rec.sse"
    raw = b'data: {"x":1}\n\n: comment\r\ndata: {"y":2}\r\n\r\ndata: [DONE]\n\n'
    recording.write_bytes(raw)
    with ChatServer(ServeOptions(replay=recording)) as srv:
        got = stream_raw(client, srv, {"anything": "goes"})
        again = stream_raw(client, srv, {"model": "echo", "messages": user("x")})
    assert got == again == raw
