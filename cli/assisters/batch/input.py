"""Reading a batch input: three line forms, chat options as defaults, checked whole first.

Each line of the JSON Lines input is one request, in any of these forms:

1. an OpenAI Batch request line, ``{"custom_id": ..., "method": "POST", "url":
   "/v1/chat/completions", "body": {...}}``; ``method`` and ``url`` may be left out
   (the ``{"custom_id", "body"}`` form of Together and Mistral);
2. a bare chat request body, ``{"messages": [...], ...}``, whose custom_id is
   ``line-N`` (N counts every line from 1);
3. with ``prompts=True``, plain prompt text (the form ``--prompts`` reads), custom_id
   ``line-N`` too.

Blank lines are skipped in every form. The chat options (:class:`ChatOptions`) fill
the fields a body does not set; a line's own fields win (:func:`with_defaults`).

:meth:`BatchInput.check` reads the whole input once before anything is sent: every
line parses, has messages, a supported url, and a custom_id no other line has.
Problems are reported as ``INPUT:LINE: reason``. Input that cannot be read twice
(stdin, a pipe) is spooled to a temporary file while it is checked, so memory stays
flat in the number of lines; :meth:`BatchInput.requests` then reads it again, one
line at a time. ``batch submit`` (the provider's Batch API) reads the same input.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson

from assisters.errors import RequestError
from assisters.request import ChatOptions
from assisters.visible import one_line

SUPPORTED_URLS = ("/v1/chat/completions", "/chat/completions")  # the second: Azure's spelling
MAX_LINE_BYTES = 16 * 1024 * 1024  # the largest request body a provider accepts is smaller
MAX_PROBLEMS = 20  # problems listed one by one; the rest are counted
STDIN_NAME = "<stdin>"
_READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class BatchRequest:
    """One request of the batch: where it came from and the body to send."""

    custom_id: str
    line: int  # 1-based line number in the input
    body: dict[str, Any]  # defaults applied


@dataclass
class InputCheck:
    """What :meth:`BatchInput.check` found."""

    requests: int = 0
    prompt_tokens: int = 0  # a rough estimate (characters / 4)
    problems: list[str] = field(default_factory=list)  # "INPUT:LINE: reason", the first MAX_PROBLEMS
    problem_count: int = 0
    custom_ids: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0


class LineProblem(ValueError):
    """What is wrong with one input line."""


def with_defaults(body: dict[str, Any], options: ChatOptions) -> dict[str, Any]:
    """``body`` with the chat options filling the fields it does not set.

    ``-s`` adds a system message only to a conversation without one; ``--max-tokens``
    fills neither ``max_tokens`` nor ``max_completion_tokens`` when either is set; a
    body that sets ``stream`` keeps it and its ``stream_options``; otherwise the
    request streams, asking for usage unless ``options.stream_usage`` is false.
    """
    out = dict(body)
    out.setdefault("model", options.model)
    messages = out.get("messages")
    if options.system and isinstance(messages, list) and not any(
            isinstance(m, dict) and m.get("role") in ("system", "developer") for m in messages):
        out["messages"] = [{"role": "system", "content": options.system}, *messages]
    for key, value in (("temperature", options.temperature), ("top_p", options.top_p),
                       ("seed", options.seed)):
        if value is not None:
            out.setdefault(key, value)
    if options.max_tokens is not None and "max_tokens" not in out and "max_completion_tokens" not in out:
        out["max_tokens"] = options.max_tokens
    if options.stop:
        out.setdefault("stop", list(options.stop))
    for key, value in options.extra.items():
        out.setdefault(key, value)
    if "stream" not in out:
        out["stream"] = options.stream
        if options.stream and options.stream_usage:
            out.setdefault("stream_options", {"include_usage": True})
    return out


def parse_line(raw: bytes, number: int, *, prompts: bool) -> tuple[str, dict[str, Any]] | None:
    """The custom_id and body (before defaults) of one line; None for a blank line.
    Raises :class:`LineProblem`."""
    if prompts:
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise LineProblem(f"not UTF-8 text (byte {exc.start + 1})") from None
        if not text.strip():
            return None
        return f"line-{number}", {"messages": [{"role": "user", "content": text}]}
    if not raw.strip():
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise LineProblem(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise LineProblem("a line must be a JSON object: a request line or a chat request body")
    if "body" in data or "custom_id" in data:
        return _request_line(data)
    _check_body(data)
    return f"line-{number}", data


def _request_line(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise LineProblem("custom_id must be a non-empty string")
    method = data.get("method", "POST")
    if method != "POST":
        raise LineProblem(f"method must be POST, not {one_line(str(method), 40)!r}")
    url = data.get("url", SUPPORTED_URLS[0])
    if url not in SUPPORTED_URLS:
        raise LineProblem(f"url {one_line(str(url), 80)!r} is not supported; supported: "
                          + ", ".join(SUPPORTED_URLS))
    body = data.get("body")
    if not isinstance(body, dict):
        raise LineProblem("body must be a JSON object (a chat request body)")
    _check_body(body)
    return custom_id, body


def _check_body(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if messages is None:
        raise LineProblem("the body has no messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise LineProblem("messages must be a non-empty list of message objects")


def refuse_problems(check: InputCheck, name: str, warn: Callable[[str], None]) -> None:
    """A checked input with problems: each one (the first :data:`MAX_PROBLEMS`) as a
    line, then the refusal (exit 65): nothing is sent."""
    if check.ok:
        return
    for problem in check.problems:
        warn(problem)
    hidden = check.problem_count - len(check.problems)
    if hidden:
        warn(f"{name}: ... and {hidden} more problems")
    raise RequestError(f"{name}: {check.problem_count} problem{'s' if check.problem_count != 1 else ''} "
                       "in the input; nothing was sent")


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """A rough prompt size: about four characters a token, plus a few per message."""
    chars = 0
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(part["text"]) for part in content
                         if isinstance(part, dict) and isinstance(part.get("text"), str))
        chars += 16  # role and framing
    return -(-chars // 4)


class BatchInput:
    """A batch input file, or stdin; read one line at a time, never whole.

    ``check()`` first (it spools input that cannot be read twice), then
    ``requests()`` as often as needed. Use it as a context manager: the spool is
    deleted on exit.
    """

    def __init__(self, path: str | None, stdin: BinaryIO, *, prompts: bool, options: ChatOptions) -> None:
        self.path = None if path in (None, "-") else path
        self.name = self.path or STDIN_NAME
        self.prompts = prompts
        self.options = options
        self._stdin = stdin
        self._spool: BinaryIO | None = None

    def __enter__(self) -> BatchInput:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def check(self) -> InputCheck:
        """Read every line once: count, estimate, and collect the problems."""
        result = InputCheck()
        first_line: dict[str, int] = {}
        source, spool = self._first_source()
        try:
            for number, raw in _lines(source, spool):
                try:
                    if raw is None:
                        raise LineProblem(f"the line is longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB")
                    parsed = parse_line(raw, number, prompts=self.prompts)
                    if parsed is None:
                        continue
                    custom_id, body = parsed
                    if custom_id in first_line:
                        raise LineProblem(f"custom_id {one_line(custom_id, 80)!r} is used again "
                                          f"(first on line {first_line[custom_id]})")
                except LineProblem as problem:
                    result.problem_count += 1
                    if len(result.problems) < MAX_PROBLEMS:
                        result.problems.append(f"{self.name}:{number}: {problem}")
                    continue
                first_line[custom_id] = number
                result.requests += 1
                result.prompt_tokens += estimate_prompt_tokens(with_defaults(body, self.options))
        finally:
            if source is not self._stdin and source is not spool:
                source.close()
        if spool is not None:
            spool.flush()
            self._spool = spool
        result.custom_ids = set(first_line)
        return result

    def requests(self) -> Iterator[BatchRequest]:
        """The requests of a checked input, in input order, defaults applied."""
        if self._spool is not None:
            self._spool.seek(0)
            source: BinaryIO = self._spool
        else:
            assert self.path is not None
            source = open(self.path, "rb")  # noqa: SIM115 - closed below, the generator owns it
        try:
            for number, raw in _lines(source, None):
                if raw is None:
                    continue
                try:
                    parsed = parse_line(raw, number, prompts=self.prompts)
                except LineProblem:
                    continue  # check() reported it
                if parsed is not None:
                    custom_id, body = parsed
                    yield BatchRequest(custom_id, number, with_defaults(body, self.options))
        finally:
            if source is not self._spool:
                source.close()

    def _first_source(self) -> tuple[BinaryIO, BinaryIO | None]:
        """What check() reads, and the spool it copies to when the input cannot be read twice."""
        if self.path is None:
            return self._stdin, _new_spool()
        source = open(self.path, "rb")  # noqa: SIM115 - check() closes it
        if stat.S_ISREG(os.fstat(source.fileno()).st_mode):
            return source, None
        return source, _new_spool()  # a FIFO or <(process substitution)


def _new_spool() -> BinaryIO:
    return tempfile.TemporaryFile(prefix="assisters-batch-")


def _lines(source: BinaryIO, spool: BinaryIO | None) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) for each line; None for a line over the cap, which is
    skipped (and copied to ``spool`` whole, so the line numbers stay right)."""
    number = 0
    while True:
        raw = source.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if spool is not None:
            spool.write(raw)
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # the rest of the long line
                raw = source.readline(_READ_CHUNK)
                if spool is not None:
                    spool.write(raw)
            yield number, None
            continue
        yield number, raw
