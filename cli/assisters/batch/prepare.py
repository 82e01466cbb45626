"""The normalised Batch request lines: what ``batch prepare`` prints and what
``batch submit`` uploads, in files within the provider's limits.

Every request of a checked input (:mod:`~assisters.batch.input`: the three line
forms, the chat options as defaults, a custom_id each) becomes one line in the
provider's shape (:func:`~assisters.batch.provider.request_line`, per the profile's
:class:`~assisters.batch.provider.ProviderAPI`): ``{"custom_id", "method": "POST",
"url": "/v1/chat/completions", "body"}``, Azure's ``"url": "/chat/completions"``, or
``{"custom_id", "body"}`` with ``batch_line_url = false``.

**No streaming in a batch.** The provider answers each request whole, and refuses
``stream: true`` there; so ``stream`` and ``stream_options`` are left out of every
body, a line's own included. They say how an answer travels, not what it is: the
result line holds the same ``chat.completion`` that ``batch run`` assembles from a
stream, and one input file serves both roads.

**Limits.** Without ``split``, the lines go to one file, and a file over the
provider's limits (:class:`~assisters.batch.provider.FileLimits`: requests, bytes)
is refused before anything is uploaded, with how to split it
(:func:`~assisters.batch.provider.check_limits`); writing stops at the first byte
over, while the rest is only counted for that advice. With ``split``, a new part
starts whenever the next line would not fit, so every part is within both limits;
the parts keep the input's order, and their custom_ids are those of the whole input
(a bare body's ``line-N`` counts lines of INPUT, not of its part). A single line
larger than a whole file may be is refused either way, naming its input line.

The part files are the requests themselves, like the spool of stdin in
:mod:`~assisters.batch.input`: they are written to a private temporary directory as
they will be sent (not scrubbed: a key typed into a prompt is sent as typed, as
``batch run`` sends it) and removed with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from assisters.batch.input import BatchInput, BatchRequest, refuse_problems
from assisters.batch.provider import FileLimits, ProviderAPI, check_limits, request_line
from assisters.config import Settings
from assisters.errors import RequestError
from assisters.request import ChatOptions
from assisters.terminal import Streams

TRANSPORT_FIELDS = ("stream", "stream_options")


def batch_body(body: dict[str, Any]) -> dict[str, Any]:
    """A request body as a Batch API line carries it: without the streaming fields."""
    return {key: value for key, value in body.items() if key not in TRANSPORT_FIELDS}


def request_lines(source: BatchInput, api: ProviderAPI) -> Iterator[tuple[BatchRequest, bytes]]:
    """Each request of a checked input, and its Batch request line."""
    for request in source.requests():
        yield request, request_line(request.custom_id, batch_body(request.body), api)


def print_lines(settings: Settings, chat: ChatOptions, input_path: str | None, streams: Streams, *,
                prompts: bool) -> None:
    """``batch prepare``: the request lines on stdout, after the whole input is checked;
    a note on stderr when they are more than one batch may hold."""
    api, limits = ProviderAPI.from_settings(settings), FileLimits.from_settings(settings)
    requests = size = 0
    with BatchInput(input_path, streams.stdin, prompts=prompts, options=chat) as source:
        refuse_problems(source.check(), source.name, streams.warn)
        for _request, line in request_lines(source, api):
            streams.stdout.write(line)
            requests += 1
            size += len(line)
    streams.stdout.flush()
    if requests > limits.max_requests or size > limits.max_bytes:
        streams.warn(f"batch: note: these {requests} requests ({size} bytes) are more than one batch may "
                     f"hold ({limits.max_requests} requests, {limits.max_bytes} bytes); "
                     "`assisters batch submit --split` submits them as several batches")


@dataclass
class RequestPart:
    """One file of request lines: one batch."""

    path: Path
    requests: int = 0
    size: int = 0
    custom_ids: list[str] = field(default_factory=list)


def write_parts(source: BatchInput, api: ProviderAPI, limits: FileLimits, directory: Path, *,
                split: bool) -> list[RequestPart]:
    """Write the request lines of a checked input to files in ``directory``: one, or
    (``split``) as many as the limits need. Raises what :func:`check_limits` raises."""
    parts: list[RequestPart] = []
    out: IO[bytes] | None = None
    over = False  # one file only, and it no longer fits: count, write nothing more
    total = RequestPart(directory)
    try:
        for request, line in request_lines(source, api):
            if len(line) > limits.max_bytes:
                raise RequestError(
                    f"{source.name}:{request.line}: this request is {len(line)} bytes as a Batch request "
                    f"line, more than one batch file may hold ({limits.max_bytes}); nothing was sent")
            total.requests += 1
            total.size += len(line)
            if not over and not split and (total.requests > limits.max_requests or
                                           total.size > limits.max_bytes):
                over = True
            if over:
                continue
            part = parts[-1] if parts else None
            if part is None or (split and (part.requests >= limits.max_requests or
                                           part.size + len(line) > limits.max_bytes)):
                if out is not None:
                    out.close()
                part = RequestPart(directory / f"part-{len(parts) + 1}.jsonl")
                parts.append(part)
                out = _create(part.path)
            assert out is not None
            try:
                out.write(line)
            except OSError as exc:
                raise RequestError(f"cannot write the request lines to {directory}: {exc.strerror}") from None
            part.requests += 1
            part.size += len(line)
            part.custom_ids.append(request.custom_id)
    finally:
        if out is not None:
            out.close()
    if over:
        check_limits(total.size, total.requests, limits, source.name)
    return parts


def _create(path: Path) -> IO[bytes]:
    try:
        return path.open("xb")
    except OSError as exc:
        raise RequestError(f"cannot write the request lines to {path.parent}: {exc.strerror}") from None


def upload_name(input_name: str, number: int, count: int) -> str:
    """The file name a part is uploaded under (the provider shows it): INPUT's, with
    ``.part-N-of-M`` when there are several."""
    stem = Path(input_name).name if not input_name.startswith("<") else "stdin"
    stem = stem.removesuffix(".jsonl")
    return f"{stem}.part-{number}-of-{count}.jsonl" if count > 1 else f"{stem}.jsonl"
