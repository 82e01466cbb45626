"""Trying again: retries before any output, and resuming a stream that broke.

Retries happen only while nothing of the answer has been shown, so a retried
run prints exactly what a lucky first attempt would have. Once text is out,
the only way on is ``--resume``: the same request again with the text shown so
far as a final assistant message, which servers that support it (vLLM with
``continue_final_message``, llama.cpp) continue; the continuation is appended,
with an echoed prefix skipped, so nothing is printed twice or lost.
"""

from __future__ import annotations

import random
import select
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import orjson

from assisters.answer import Answer
from assisters.config import Settings
from assisters.deadline import Watchdog, seconds, total_timeout
from assisters.errors import AssistersError, TemporaryError
from assisters.exchange import Exchange
from assisters.stream import ChatResult, ChatSink, consume_chat
from assisters.timing import Timing

AttemptOpener = Callable[[Timing, "bytes | None"], AbstractContextManager[Exchange]]
Notify = Callable[[str], None]


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    max_wait: float = 60.0  # the longest single wait, ours or the server's Retry-After
    max_total_wait: float = 120.0  # all waits of one run together
    base_delay: float = 1.0
    max_resumes: int = 0
    resume_body: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_retries=settings.max_retries,
            max_wait=settings.max_retry_wait,
            max_total_wait=settings.max_total_wait,
            max_resumes=settings.max_resumes if settings.resume else 0,
            resume_body=settings.resume_body,
        )


def backoff_delay(policy: RetryPolicy, retry_number: int, rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, so many
    clients failing together do not come back together."""
    ceiling = min(policy.max_wait, policy.base_delay * 2 ** (retry_number - 1))
    return ceiling * (0.5 + rng() / 2)


def wait_for_retry(delay: float, watch: Watchdog | None, stdout_fd: int | None) -> None:
    """Sleep ``delay`` seconds; stop at once if stdout's reader goes away (raises
    BrokenPipeError: nobody wants the answer any more) or the total timeout ends.
    Ctrl-C interrupts the sleep as it does any other."""
    remaining = watch.remaining_total() if watch is not None else None
    if remaining is not None and remaining < delay:
        _sleep(max(0.0, remaining), stdout_fd)
        assert watch is not None
        raise total_timeout(watch.total or 0.0)
    _sleep(delay, stdout_fd)


def _sleep(delay: float, stdout_fd: int | None) -> None:
    deadline = time.monotonic() + delay
    poller = None
    if stdout_fd is not None and hasattr(select, "poll"):
        poller = select.poll()
        poller.register(stdout_fd, 0)  # POLLERR and POLLHUP are always reported
    while (left := deadline - time.monotonic()) > 0:
        if poller is None:
            time.sleep(left)
            continue
        if poller.poll(left * 1000):
            raise BrokenPipeError("stdout was closed while waiting to retry")


class _Shown:
    """The sink as the run sees it: remembers whether, and what, text went out."""

    def __init__(self, sink: ChatSink, keep_text: bool) -> None:
        self._sink = sink
        self._keep = keep_text
        self.parts: list[str] = []
        self.any = False
        self.reads = 0  # how many reads brought text, to tell whether an attempt made progress

    def text(self, text: str) -> None:
        self.any = True
        self.reads += 1
        if self._keep:
            self.parts.append(text)
        self._sink.text(text)

    def reasoning(self, text: str) -> None:
        self.any = True
        self._sink.reasoning(text)

    def so_far(self) -> str:
        text = "".join(self.parts)
        self.parts = [text]
        return text


class _SkipEcho:
    """A resumed attempt's text: if the server repeats the prefix it was given
    before continuing, hold text while it could still be that echo, then drop it."""

    def __init__(self, sink: _Shown, prefix: str) -> None:
        self._sink = sink
        self._prefix = prefix
        self._held = ""
        self._deciding = bool(prefix)
        self.echoed = False

    def text(self, text: str) -> None:
        if not self._deciding:
            self._sink.text(text)
            return
        self._held += text
        if len(self._held) < len(self._prefix) and self._prefix.startswith(self._held):
            return  # could still be the echo
        self._decide()

    def reasoning(self, text: str) -> None:
        self._sink.reasoning(text)

    def finish(self, completed: bool) -> None:
        """The attempt ended. Held text is real text if the answer completed; if the
        attempt broke half-way through what may be an echo, it is dropped, and the
        next resume asks for it again."""
        if self._deciding and self._held:
            if completed:
                self._decide()
            else:
                self._held = ""

    def _decide(self) -> None:
        held, self._held, self._deciding = self._held, "", False
        if held.startswith(self._prefix):
            self.echoed = True
            held = held[len(self._prefix):]
        if held:
            self._sink.text(held)


@dataclass
class _Usage:
    total: dict[str, Any] | None = None

    def add(self, usage: object) -> None:
        if isinstance(usage, Mapping) and usage:  # a server's odd usage value is not ours to sum
            self.total = _summed(self.total or {}, usage)


def _summed(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        old = out.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and isinstance(old, int):
            out[key] = old + value
        elif isinstance(value, Mapping) and isinstance(old, Mapping):
            out[key] = _summed(old, value)
        else:
            out[key] = value
    return out


@dataclass
class Progress:
    """How far a run got, kept up to date by :func:`run_chat`, so that a run that
    fails or is interrupted can still show what arrived (``--json``)."""

    answer: Answer | None = None  # the latest attempt's
    resumes: int = 0
    earlier: _Usage = field(default_factory=_Usage)  # usage of the attempts before it

    def usage(self) -> Any:
        """The usage so far, as a successful run would report it: summed over the
        attempts once a stream was resumed, else the latest attempt's."""
        latest = self.answer.usage if self.answer is not None else None
        if not self.resumes:
            return latest
        total = _Usage(self.earlier.total)
        total.add(latest)
        return total.total


def run_chat(open_attempt: AttemptOpener, sink: ChatSink, *, body: bytes | None, policy: RetryPolicy,
             notify: Notify, timing: Timing, watch: Watchdog | None = None,
             stdout_fd: int | None = None, keep_text: bool = True,
             progress: Progress | None = None) -> ChatResult:
    """Run the chat request until it completes, retrying and resuming per ``policy``.

    Raises the last attempt's :class:`AssistersError` when it gives up; text
    already shown stays shown, and ``progress`` holds what the attempts received.
    """
    resumable = policy.max_resumes > 0 and _resume_base(body) is not None
    shown = _Shown(sink, keep_text=resumable)
    progress = Progress() if progress is None else progress
    usage = progress.earlier
    retries = resumes = 0
    waited = 0.0
    attempt_body: bytes | None = None  # None: the request's own body
    prefix = ""
    while True:
        answer = progress.answer = Answer(keep_text=keep_text)
        target: _Shown | _SkipEcho = _SkipEcho(shown, prefix) if prefix else shown
        reads_before = shown.reads
        completed = False
        try:
            try:
                with open_attempt(timing, attempt_body) as exchange:
                    result = consume_chat(exchange, target, timing, answer=answer)
                completed = True
            finally:
                if isinstance(target, _SkipEcho):
                    target.finish(completed)
        except AssistersError as exc:
            if not exc.retryable:
                raise
            if not shown.any:
                if retries >= policy.max_retries:
                    if retries:
                        exc.message += f" (gave up after {retries + 1} attempts)"
                    raise
                retries += 1
                delay = retry_delay(policy, retries, exc, waited)
                notify(f"assisters: {exc.message}; retrying in {delay:.1f} s "
                       f"(attempt {retries + 1} of {policy.max_retries + 1})")
            else:
                if not resumable or resumes >= policy.max_resumes:
                    if resumes:
                        exc.message += f" (after {resumes} resumes)"
                    raise
                resumes += 1
                progress.resumes = resumes
                prefix = shown.so_far()
                attempt_body = _resume_body(body, prefix, policy.resume_body)
                # A stream that broke after making progress is resumed at once;
                # a resumed request that failed outright waits like a retry.
                progressed = shown.reads > reads_before
                delay = 0.0 if progressed else retry_delay(policy, resumes, exc, waited)
                notify(f"assisters: {exc.message}; resuming after {len(prefix)} characters "
                       f"(resume {resumes} of {policy.max_resumes})")
            if delay > 0:
                wait_for_retry(delay, watch, stdout_fd)
                waited += delay
            usage.add(answer.usage)
            continue
        if resumes:
            usage.add(answer.usage)
            answer.usage = usage.total
        result.resumed_prefix = prefix
        return result


def retry_delay(policy: RetryPolicy, number: int, exc: AssistersError, waited: float) -> float:
    """How long to wait before retry ``number`` (1-based) after ``exc``, having waited
    ``waited`` seconds already: the server's own wait, else backoff with jitter. Raises
    :class:`TemporaryError` (exit 75) when that passes the caps. Shared by ``chat``
    and the batch engine."""
    asked = exc.retry_after
    delay = asked if asked is not None else backoff_delay(policy, number)
    if asked is not None and asked > policy.max_wait:
        raise TemporaryError(
            f"{exc.message}; the server asks to retry after {seconds(asked)}, more than the "
            f"{seconds(policy.max_wait)} limit (raise it with --max-retry-wait or ASSISTERS_MAX_RETRY_WAIT)"
        )
    if waited + delay > policy.max_total_wait:
        raise TemporaryError(
            f"{exc.message}; waiting {seconds(round(delay, 1))} more would pass the "
            f"{seconds(policy.max_total_wait)} limit on all retry waits "
            "(raise it with --max-total-wait or ASSISTERS_MAX_TOTAL_WAIT)"
        )
    return delay


def _resume_base(body: bytes | None) -> dict[str, Any] | None:
    """The request as a JSON object with a messages list, or None if it can't be resumed."""
    if body is None:
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        return None
    return data


def _resume_body(body: bytes | None, prefix: str, extra: Mapping[str, Any]) -> bytes:
    data = _resume_base(body)
    assert data is not None
    data["messages"] = [*data["messages"], {"role": "assistant", "content": prefix}]
    data.update(extra)
    return orjson.dumps(data)
