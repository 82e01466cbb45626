"""Glue between a command's settings and the core: client, exchange, renderer, report.

Each ``run_*`` function is one command's whole job, minus option parsing. The
same renderers serve a live exchange and a recorded one (``replay``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from assisters.client import Timing, make_client
from assisters.config import LOCAL_BASE_URL, Settings
from assisters.debug import EventPrinter, consume_debug, describe_request, describe_response
from assisters.exchange import Exchange, OutgoingRequest, open_exchange, with_client_headers
from assisters.raw import consume_raw
from assisters.recording import ReplayExchange, load_recording, recorder_for
from assisters.sinks import JsonSink, TextSink, usage_line
from assisters.stream import consume_chat
from assisters.terminal import Streams

ExchangeOpener = Callable[[Timing], AbstractContextManager[Exchange]]


@contextmanager
def local_server(settings: Settings) -> Iterator[Settings]:
    """``--base-url local``: the built-in server runs for the duration of the command."""
    if settings.base_url != LOCAL_BASE_URL:
        yield settings
        return
    from assisters.server import ChatServer, ServeOptions

    with ChatServer(ServeOptions(default_model="lorem")) as server:
        yield dataclasses.replace(settings, base_url=server.base_url)


def live(settings: Settings, request: OutgoingRequest, command: str, streams: Streams, *,
         save: str | None = None, verbose: bool = False) -> ExchangeOpener:
    """How to open the real exchange: client, optional recording, optional ``-v`` dump."""

    @contextmanager
    def opener(timing: Timing) -> Iterator[Exchange]:
        secrets = [settings.api_key.reveal()] if settings.api_key else []
        with recorder_for(save, command, secrets) as recorder, make_client(settings) as client:
            if verbose:
                streams.warn(describe_request(with_client_headers(client, request)))
            with open_exchange(client, request, timing=timing, recorder=recorder) as exchange:
                if verbose:
                    streams.warn(describe_response(exchange.head))
                yield exchange

    return opener


def replayed(path: Path, *, realtime: bool) -> ExchangeOpener:
    recording = load_recording(path)
    return lambda timing: nullcontext(ReplayExchange(recording, realtime=realtime))


def render_chat(open_exchange: ExchangeOpener, streams: Streams, *, as_json: bool = False,
                show_usage: bool = False) -> None:
    """``chat``: the answer to stdout as it arrives, warnings and usage to stderr.

    Text already written stays written when the stream fails; the exception
    then carries the exit status.
    """
    sink = JsonSink(streams) if as_json else TextSink(streams)
    timing = Timing()
    try:
        with open_exchange(timing) as exchange:
            result = consume_chat(exchange, sink, timing)
    finally:
        sink.close()
    if as_json:
        sink.write(result.answer.completion_object())
    for warning in result.warnings:
        streams.warn(warning)
    if show_usage:
        streams.warn(usage_line(result))


def render_debug(open_exchange: ExchangeOpener, streams: Streams, *, pretty: bool = False,
                 comments: bool = False) -> None:
    printer = EventPrinter(streams, pretty=pretty, comments=comments)
    timing = Timing()
    with open_exchange(timing) as exchange:
        consume_debug(exchange, printer, timing, streams)


def render_raw(open_exchange: ExchangeOpener, streams: Streams, *, events: bool = False) -> None:
    with open_exchange(Timing()) as exchange:
        consume_raw(exchange, streams.stdout, events=events)
