"""Glue between a command's settings and the core: client, exchange, renderer, report.

Each ``run_*`` function is one command's whole job, minus option parsing. The
same renderers serve a live exchange and a recorded one (``replay``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

import orjson

from assisters.client import make_client
from assisters.config import LOCAL_BASE_URL, Settings
from assisters.deadline import Watchdog
from assisters.errors import AssistersError, ExitStatus, OutputError, Terminated
from assisters.event_log import EventPrinter, consume_debug, describe_request, describe_response
from assisters.exchange import Exchange, OutgoingRequest, open_exchange, with_client_headers
from assisters.passthrough import consume_raw
from assisters.recording import ReplayExchange, load_recording, recorder_for
from assisters.retry import Progress, RetryPolicy, run_chat
from assisters.sinks import JsonSink, Tee, TextSink, usage_line
from assisters.stream import ChatResult, ChatSink
from assisters.terminal import Streams
from assisters.timing import Timing

# Opens one attempt: the timing to fill in, and a replacement request body (a
# resumed request) or None for the request's own.
ExchangeOpener = Callable[[Timing, "bytes | None"], AbstractContextManager[Exchange]]


@contextmanager
def local_server(settings: Settings) -> Iterator[Settings]:
    """``--base-url local``: the built-in server runs for the duration of the command."""
    if settings.base_url != LOCAL_BASE_URL:
        yield settings
        return
    from assisters.server.app import ChatServer
    from assisters.server.options import ServeOptions

    with ChatServer(ServeOptions(default_model="lorem")) as server:
        yield dataclasses.replace(settings, base_url=server.base_url)


class LiveOpener:
    """How to open the real exchange: client, timeouts, optional recording, optional ``-v`` dump.

    One per command run; each call is one attempt. With ``--save`` the file holds
    the last attempt.
    """

    def __init__(self, settings: Settings, request: OutgoingRequest, command: str, streams: Streams, *,
                 save: str | None = None, verbose: bool = False) -> None:
        self.settings = settings
        self.request = request
        self.command = command
        self.streams = streams
        self.save = save
        self.verbose = verbose
        self.watch = Watchdog(first_byte=settings.first_byte_timeout, idle=settings.idle_timeout,
                              total=settings.total_timeout,
                              head=settings.response_head_timeout if asks_for_stream(request.body) else None)

    @contextmanager
    def __call__(self, timing: Timing, body: bytes | None = None) -> Iterator[Exchange]:
        settings, streams = self.settings, self.streams
        request = self.request if body is None else dataclasses.replace(self.request, body=body)
        with self.watch, recorder_for(self.save, self.command) as recorder, \
                make_client(settings) as client:
            if self.verbose:
                streams.warn(describe_request(with_client_headers(client, request)))
            with open_exchange(client, request, timing=timing, recorder=recorder,
                               watch=self.watch) as exchange:
                if self.verbose:
                    streams.warn(describe_response(exchange.head))
                yield exchange


def asks_for_stream(body: bytes | None) -> bool:
    """Whether the request body asks for a streamed answer (``"stream": true``): only
    then does the response head come before the model has finished."""
    if not body or b'"stream"' not in body:
        return False
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(request, dict) and request.get("stream") is True


def live(settings: Settings, request: OutgoingRequest, command: str, streams: Streams, *,
         save: str | None = None, verbose: bool = False) -> LiveOpener:
    return LiveOpener(settings, request, command, streams, save=save, verbose=verbose)


def replayed(path: Path, *, realtime: bool) -> ExchangeOpener:
    recording = load_recording(path)
    return lambda timing, body=None: nullcontext(ReplayExchange(recording, realtime=realtime))


def render_chat(open_exchange: ExchangeOpener, streams: Streams, *, as_json: bool = False,
                show_usage: bool = False, policy: RetryPolicy | None = None, watch: Watchdog | None = None,
                request_body: bytes | None = None, quiet: bool = False, tee: ChatSink | None = None,
                json_extra: Mapping[str, Any] | None = None) -> ChatResult:
    """``chat``: the answer to stdout as it arrives, warnings and usage to stderr.

    Text already written stays written when the stream fails; the exception
    then carries the exit status (``--json`` prints the object assembled so far,
    marked incomplete: :meth:`JsonSink.write_incomplete`). ``request_body`` is what
    a resumed request extends; ``quiet`` silences the retry and resume notices.
    ``tee`` gets every piece of text and reasoning that is shown (a conversation
    keeps it, even when the answer fails or is interrupted), ``json_extra`` adds
    fields to ``--json``.
    """
    sink = JsonSink(streams) if as_json else TextSink(streams)
    timing = Timing()
    notify = (lambda line: None) if quiet else sink.notice
    shown = sink if tee is None else Tee(sink, tee)
    progress = Progress()
    try:
        result = run_chat(open_exchange, shown, body=request_body,
                          policy=policy or RetryPolicy(max_retries=0), notify=notify, timing=timing,
                          watch=watch, stdout_fd=fileno(streams.stdout), keep_text=as_json,
                          progress=progress)
    except (AssistersError, KeyboardInterrupt) as exc:
        if isinstance(sink, JsonSink) and not isinstance(exc, OutputError):
            _write_incomplete(sink, progress, exc, json_extra)
        raise
    finally:
        sink.close()
    if as_json:
        completion = result.answer.completion_object()
        if result.resumed_prefix and completion["choices"]:
            message = completion["choices"][0]["message"]
            message["content"] = result.resumed_prefix + (message.get("content") or "")
        with watch if watch is not None else nullcontext():  # the total timeout covers this write too
            sink.write({**completion, **json_extra} if json_extra else completion)
    for warning in result.warnings:
        streams.warn(warning)
    if show_usage:
        streams.warn(usage_line(result))
    return result


def _write_incomplete(sink: JsonSink, progress: Progress, exc: BaseException,
                      extra: Mapping[str, Any] | None) -> None:
    """``--json`` after a failure: the object so far; the failure itself (its line on
    stderr, its status) stays what it was, even if stdout is gone too."""
    if isinstance(exc, AssistersError):
        status, message = int(exc.status), exc.message
    elif isinstance(exc, Terminated):
        status, message = int(ExitStatus.TERMINATED), "terminated by SIGTERM"
    else:
        status, message = int(ExitStatus.INTERRUPTED), "interrupted"
    with suppress(OSError, AssistersError):
        sink.write_incomplete(progress, status, message, extra)


def fileno(stream: object) -> int | None:
    """The file descriptor under a stream, or None (a test's stream has none)."""
    try:
        return stream.fileno()  # type: ignore[attr-defined, no-any-return]
    except (AttributeError, OSError, ValueError):
        return None


def render_debug(open_exchange: ExchangeOpener, streams: Streams, *, pretty: bool = False,
                 comments: bool = False) -> None:
    printer = EventPrinter(streams, pretty=pretty, comments=comments)
    timing = Timing()
    with open_exchange(timing, None) as exchange:
        consume_debug(exchange, printer, timing, streams)


def render_raw(open_exchange: ExchangeOpener, streams: Streams, *, events: bool = False) -> None:
    with open_exchange(Timing(), None) as exchange:
        consume_raw(exchange, streams.stdout, events=events)
