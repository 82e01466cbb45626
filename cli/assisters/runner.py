"""Glue between a command's settings and the streaming core: client, sink, usage line."""

from __future__ import annotations

from assisters.client import make_client
from assisters.config import Settings
from assisters.sinks import JsonSink, TextSink, usage_line
from assisters.stream import ChatResult, run_chat
from assisters.terminal import Streams


def run_chat_command(
    settings: Settings, body: bytes, streams: Streams, *, as_json: bool, show_usage: bool
) -> ChatResult:
    """``assisters chat``: stream the answer to stdout, report on stderr.

    Text already written stays written when the stream fails; the exception
    then carries the exit status.
    """
    sink = JsonSink(streams) if as_json else TextSink(streams)
    try:
        with make_client(settings) as client:
            result = run_chat(client, settings, body, sink)
    finally:
        sink.close()
    if as_json:
        sink.write(result.answer.completion_object())
    for warning in result.warnings:
        streams.warn(warning)
    if show_usage:
        streams.warn(usage_line(result))
    return result
