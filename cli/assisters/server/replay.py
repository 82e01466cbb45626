"""``serve --replay``: answer every chat request with a recording or raw SSE bytes."""

from __future__ import annotations

import re
from pathlib import Path

from assisters.errors import RequestError
from assisters.recording import load_recording, looks_like_recording
from assisters.server.api_errors import ApiError
from assisters.server.event_stream import EventStream

_EVENT_END_RE = re.compile(rb"(?<=\r\n\r\n)|(?<=\n\n)|(?<=\r\r)")


def write_replay(stream: EventStream, path: Path) -> None:
    """Answer a chat request with a recording instead of a model.

    A recording made with ``--save`` is served with its status, headers and body
    reads (one HTTP chunk per read, as fast as possible). Any other file is taken
    as raw SSE bytes, sent as ``200 text/event-stream`` in pieces split after each
    blank line.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ApiError(500, f"Cannot read the replay file: {exc}", type_="server_error") from None
    if looks_like_recording(data):
        try:
            recording = load_recording(path)
        except RequestError as exc:
            raise ApiError(500, f"Cannot replay: {exc.message}", type_="server_error") from None
        if recording.head is None:
            raise ApiError(502, "The recording holds no response.", type_="server_error")
        stream.open(recording.head.status, recording.head.reason, _replayable(recording.head.headers))
        pieces = [piece for _, piece in recording.reads]
        broke = recording.error is not None
    else:
        stream.open()
        pieces, broke = split_events(data), False
    stream.pause(stream.options.first_token_delay_ms / 1000)
    for piece in pieces:
        stream.write(piece)
    if broke:  # the recorded connection broke: so does this one
        stream.drop()
    stream.end()


_HOP_BY_HOP = {"transfer-encoding", "content-length", "connection", "keep-alive", "date", "server"}


def _replayable(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]


def split_events(data: bytes) -> list[bytes]:
    """Cut raw SSE bytes after each blank line (LF, CRLF or CR endings), keeping every byte."""
    return [piece for piece in _EVENT_END_RE.split(data) if piece]
