"""One HTTP exchange as the commands see it: a response head and the body's reads.

The same :class:`Exchange` comes from the network (:func:`open_exchange`) or from
a recording (:mod:`assisters.recording`), so ``chat``, ``debug`` and ``raw`` render
both the same way. ``reads`` yields the body exactly as received (transfer framing
removed, content encoding kept); :class:`BodyDecoder` undoes gzip/deflate
incrementally for the commands that parse the body.
"""

from __future__ import annotations

import contextlib
import socket
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from assisters.client import transport_error
from assisters.deadline import Watchdog
from assisters.errors import AssistersError, LimitError, ProtocolError
from assisters.timing import Timing

ACCEPT_ENCODING = "gzip, deflate"  # only what BodyDecoder can undo


@dataclass(frozen=True)
class ResponseHead:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    http_version: str = "HTTP/1.1"

    def header(self, name: str, default: str = "") -> str:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), default)

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def media_type(self) -> str:
        return self.header("content-type").split(";")[0].strip().lower()

    @property
    def is_json(self) -> bool:
        kind = self.media_type
        return kind == "application/json" or kind.endswith("+json")


class Exchange(Protocol):
    head: ResponseHead
    recorded_ms: float | None  # a replay's recorded time of the current read; None when live

    def reads(self) -> Iterator[bytes]:
        """The body's reads; raises :class:`AssistersError` if the transport breaks."""
        ...


@dataclass(frozen=True)
class OutgoingRequest:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes | None
    # A body sent in pieces instead (a file upload), never held whole nor recorded;
    # give its Content-Length in ``headers``.
    stream: Iterable[bytes] | None = None


class Recorder(Protocol):
    def request(self, request: OutgoingRequest) -> None: ...

    def response(self, head: ResponseHead) -> None: ...

    def read(self, data: bytes) -> None: ...

    def error(self, error: AssistersError) -> None: ...

    def interrupted(self) -> None: ...

    def end(self) -> None: ...


class LiveExchange:
    """An httpx streamed response; transport errors become :class:`AssistersError`."""

    def __init__(self, response: httpx.Response, url: str, timing: Timing,
                 recorder: Recorder | None, watch: Watchdog | None = None) -> None:
        self._response = response
        self._url = url
        self._timing = timing
        self._recorder = recorder
        self._watch = watch or Watchdog(first_byte=1.0, idle=1.0)  # unarmed: never fires
        self._raw: Iterator[bytes] | None = None  # the body's reads, kept for finish_body
        self.recorded_ms: float | None = None
        self.head = ResponseHead(
            status=response.status_code,
            reason=response.reason_phrase,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw],
            http_version=response.http_version,
        )

    def abort(self) -> None:
        """Cut the connection now, from any thread: a read blocked on it returns at once
        (closing a socket does not wake a blocked read on Linux; shutting it down does)."""
        stream = self._response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, also under TLS

    def set_read_timeout(self, seconds: float) -> None:
        """httpx's timeout for the body's reads from now on (its ``timeout`` request
        extension, read when the body's first read starts)."""
        timeouts = self._response.request.extensions.get("timeout")
        if isinstance(timeouts, dict):
            timeouts["read"] = seconds

    def finish_body(self, limit: int) -> bool:
        """Read the rest of a body the reader stopped early (at ``[DONE]``), at most
        ``limit`` bytes, so that the connection goes back to the pool instead of being
        closed (a client sending many requests then never reconnects). True when the
        body ended; a transport failure is not an error here."""
        raw = self._raw
        if raw is None:
            return False
        size = 0
        try:
            for data in raw:
                size += len(data)
                if size > limit:
                    return False
        except httpx.HTTPError:
            return False
        return True

    def reads(self) -> Iterator[bytes]:
        recorder = self._recorder
        watch = self._watch
        try:
            raw = self._raw = self._response.iter_raw()
            watch.steps += 1  # waiting
            for data in raw:  # the first read, apart, so the loop below stays lean
                watch.steps += 1
                watch.got_bytes = True
                self._timing.first_byte = time.perf_counter()
                if recorder is not None:
                    recorder.read(data)
                yield data
                watch.steps += 1
                break
            if recorder is None:
                for data in raw:
                    watch.steps += 1
                    yield data
                    watch.steps += 1
            else:
                for data in raw:
                    watch.steps += 1
                    recorder.read(data)
                    yield data
                    watch.steps += 1
        except httpx.HTTPError as exc:
            raise _failure(exc, self._url, recorder) from None
        except AssistersError as exc:  # a timeout from the watchdog
            if recorder is not None:
                recorder.error(exc)
            raise
        finally:
            watch.stop_waiting()


def _failure(exc: httpx.HTTPError, url: str, recorder: Recorder | None, *,
             answered: bool = True) -> AssistersError:
    """The transport failure as the user sees it, recorded first when recording."""
    error = transport_error(exc, url, answered=answered)
    if recorder is not None:
        recorder.error(error)
    return error


@contextmanager
def open_exchange(
    client: httpx.Client,
    request: OutgoingRequest,
    *,
    timing: Timing,
    recorder: Recorder | None = None,
    watch: Watchdog | None = None,
    timeout: httpx.Timeout | None = None,
) -> Iterator[LiveExchange]:
    """Send ``request`` and yield the streamed exchange; the connection is closed
    on every way out (end of body, an error, a timeout, a broken pipe, Ctrl-C).
    ``timeout`` replaces the client's timeouts for this request."""
    if recorder is not None:
        recorder.request(with_client_headers(client, request))
    responded = False
    try:
        if watch is not None:
            watch.new_attempt()
        content = request.body if request.stream is None else request.stream
        extra = {} if timeout is None else {"timeout": timeout}
        with client.stream(request.method, request.url, content=content,
                           headers=request.headers, **extra) as response:
            responded = True
            if watch is not None:
                watch.response_head()
            timing.headers = time.perf_counter()
            exchange = LiveExchange(response, request.url, timing, recorder, watch)
            if recorder is not None:
                recorder.response(exchange.head)
            yield exchange
    except httpx.HTTPError as exc:
        raise _failure(exc, request.url, recorder, answered=responded) from None
    except AssistersError as exc:
        if recorder is not None and not responded:  # a timeout before the response head
            recorder.error(exc)
        raise
    except KeyboardInterrupt:
        if recorder is not None:
            recorder.interrupted()
        raise
    finally:
        if watch is not None:
            watch.stop_waiting()
        if recorder is not None:
            recorder.end()


def with_client_headers(client: httpx.Client, request: OutgoingRequest) -> OutgoingRequest:
    """The request with the client's default headers, as it goes on the wire."""
    merged = httpx.Headers(client.headers)
    merged.update(dict(request.headers))
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in merged.raw]
    return OutgoingRequest(request.method, request.url, headers, request.body)


MAX_EXPANSION = 500  # decompressed bytes per compressed byte, over the whole body
EXPANSION_FLOOR = 1024 * 1024  # the ratio counts once this much has come out
_PIECE = 256 * 1024  # zlib's output per call, so no single call makes a huge buffer


class BodyDecoder:
    """Undo ``Content-Encoding`` (gzip, deflate) read by read, so a compressed
    stream is still shown as it arrives.

    A compressed body may not expand more than :data:`MAX_EXPANSION` times (once
    past :data:`EXPANSION_FLOOR`): deflate cannot pass about 1030:1, which only a
    run of one repeated byte reaches (a decompression bomb); real event streams
    and JSON stay far below 300:1, even a degenerate answer repeating itself. A
    body that does ends with :class:`LimitError` (exit 76) before its memory
    grows. ``limit``, when given, caps the decompressed size of the whole body
    (error bodies, non-streamed replies), ``what`` naming it in the message.
    """

    def __init__(self, content_encoding: str, *, limit: int | None = None, what: str = "") -> None:
        encodings = [e.strip().lower() for e in content_encoding.split(",") if e.strip()]
        encodings = [e for e in encodings if e != "identity"]
        self._decoders: list[zlib._Decompress] = []
        for encoding in reversed(encodings):
            if encoding in ("gzip", "x-gzip"):
                self._decoders.append(zlib.decompressobj(16 + zlib.MAX_WBITS))
            elif encoding == "deflate":
                self._decoders.append(zlib.decompressobj())
            else:
                raise ProtocolError(f"the response uses an unsupported content encoding: {encoding}")
        self._limit = limit
        self._what = what
        self._taken = 0  # compressed bytes that went into the first decoder
        self._made = [0] * len(self._decoders)  # bytes out of each decoder

    @property
    def decodes(self) -> bool:
        """False when the body has no content encoding: ``decode`` would return its input."""
        return bool(self._decoders)

    def decode(self, data: bytes) -> bytes:
        try:
            for stage, decoder in enumerate(self._decoders):
                data = self._inflate(stage, decoder, data)
        except zlib.error as exc:
            raise ProtocolError(f"the compressed response body is corrupt: {exc}") from None
        return data

    def _inflate(self, stage: int, decoder: zlib._Decompress, data: bytes) -> bytes:
        pieces = []
        while True:
            piece = decoder.decompress(data, _PIECE)
            if stage == 0:
                self._taken += len(data) - len(decoder.unconsumed_tail)
            data = decoder.unconsumed_tail
            if piece:
                pieces.append(piece)
                self._made[stage] += len(piece)
                self._check(self._made[stage])
            if not data and len(piece) < _PIECE:
                break
        return b"".join(pieces)

    def _check(self, made: int) -> None:
        if self._limit is not None and made > self._limit:
            raise LimitError(f"{self._what} is larger than {_size(self._limit)} once decompressed "
                             f"(the limit for {self._what})")
        if made > EXPANSION_FLOOR and made > MAX_EXPANSION * self._taken:
            raise LimitError(f"the compressed response expands more than {MAX_EXPANSION} times "
                             f"({_size(made)} from {_size(self._taken)}; the limit on the compression "
                             "ratio): a decompression bomb or a broken server")


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.4g} MiB"
    if count >= 1024:
        return f"{count / 1024:.4g} KiB"
    return f"{count} bytes"


def read_body(exchange: Exchange, limit: int) -> bytes:
    """Up to ``limit`` bytes of a (short) body, e.g. an error reply; transport errors give up quietly."""
    parts: list[bytes] = []
    size = 0
    try:
        for data in exchange.reads():
            parts.append(data)
            size += len(data)
            if size >= limit:
                break
    except AssistersError:
        pass
    return b"".join(parts)[:limit]
