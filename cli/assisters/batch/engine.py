"""The batch engine: many chat requests at once over one shared httpx client.

Why threads: the core (:func:`~assisters.exchange.open_exchange`,
:func:`~assisters.stream.consume_chat`, :class:`~assisters.answer.Answer`) is
synchronous, and a pool of threads sharing one ``httpx.Client`` runs it as it is, at
a lower CPU cost per request than an asyncio loop over ``httpx.AsyncClient`` (see
bench/README.md: both are measured side by side).

The shape:

* **workers** (``-j`` daemon threads) each loop: take the next request under the
  engine's lock (the :class:`~assisters.batch.pacing.Governor` says when one may go;
  a retry that is due comes first; new requests are read from the input one at a time,
  never the whole input), send it and read the reply into an ``Answer`` through the
  core with the lock released, then, under the lock again, handle the outcome: a line
  for OUTPUT, a retry (into a heap, due later, holding no slot while it waits), or the
  end of the batch (a bad key, no quota). No hand-off to another thread lies between
  two requests, which keeps the CPU per request at that of a plain thread pool;
* a **monitor** thread enforces the first-byte, idle and total timeouts of every
  request in flight (the SIGALRM watchdog works only for the main thread): each
  request has its own :class:`~assisters.deadline.Watchdog`, which the core's reads
  tick as for ``chat``; the monitor calls its ``check`` and cuts the connection of an
  expired one (:meth:`~assisters.exchange.LiveExchange.abort`). Before the response
  head there is no connection to cut yet: httpx's read timeout, set per request to
  the first-byte timeout (or what is left of the total), covers that wait, and is
  raised to the backstop once the head is in;
* the **main thread** shows progress and takes signals: SIGINT and SIGTERM only post
  a number to a queue it waits on, so the batch stops between two steps, never in the
  middle of writing a line; at the end it cuts what is still in flight and waits a
  moment (``DRAIN_SECONDS``) for attempts that complete.

Retries follow the chat rules (:func:`~assisters.retry.retry_delay`): connect errors,
timeouts, 408, 409, 429, 5xx, a cut stream; the backoff and the server's Retry-After
within ``--max-retry-wait`` and ``--max-total-wait`` (per request). Nothing of an
answer is shown before it is complete, so a stream cut half-way is simply retried.
"""

from __future__ import annotations

import heapq
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from assisters.answer import Answer
from assisters.batch import lines
from assisters.batch.input import BatchRequest, estimate_prompt_tokens
from assisters.batch.pacing import Governor
from assisters.batch.summary import BatchStats
from assisters.config import Settings
from assisters.deadline import Watchdog, total_timeout
from assisters.errors import AssistersError, ExitStatus, HTTPStatusError, TemporaryError, TimeoutFailure
from assisters.exchange import LiveExchange, OutgoingRequest, ResponseHead, open_exchange
from assisters.retry import RetryPolicy, retry_delay
from assisters.stream import CHAT_HEADERS, consume_chat
from assisters.timing import Timing

WriteLine = Callable[[int, "dict[str, Any] | None"], None]  # (order, line or None: no line)
Notify = Callable[[str], None]
DRAIN_SECONDS = 1.0  # after a stop: how long to wait for attempts that may still complete
TICK_SECONDS = 0.5  # the progress display is offered a refresh at least this often
# After [DONE], the rest of the body (the end of the chunked framing) is read so the
# connection is reused: at most this much, for at most this long.
FINISH_BYTES = 64 * 1024
FINISH_SECONDS = 1.0


class _Discard:
    """The sink of a batch answer: nothing is shown, the Answer keeps the text."""

    def text(self, text: str) -> None:
        pass

    def reasoning(self, text: str) -> None:
        pass


_DISCARD = _Discard()


class Cancelled(AssistersError):
    """The batch stopped while this request was in flight: it gets no line."""


@dataclass(eq=False)
class Job:
    """One request of the batch across its attempts."""

    request: BatchRequest
    payload: bytes
    tokens: int  # what a rate limit counts: the estimated prompt and max_tokens
    order: int  # its place among the requests this run sends (--ordered)
    watch: Watchdog | None = None  # made at the first attempt; the total timeout runs from there
    retries: int = 0
    waited: float = 0.0
    ready_at: float = 0.0
    marks: tuple[int, int] = (0, 0)
    exchange: LiveExchange | None = None
    timed_out: TimeoutFailure | None = None
    cancelled: bool = False
    finish_by: float | None = None  # reading the end of a complete body: cut it after this

    def __lt__(self, other: Job) -> bool:  # the retry heap's tie-break
        return self.order < other.order


@dataclass
class Outcome:
    """How one attempt ended, as a worker hands it back."""

    job: Job
    completion: dict[str, Any] | None
    error: AssistersError | None
    head: ResponseHead | None
    usage: Any = None


class BatchEngine:
    """Runs the requests of one batch; see the module docstring."""

    def __init__(self, settings: Settings, client: httpx.Client, *, concurrency: int, policy: RetryPolicy,
                 governor: Governor, stats: BatchStats, write: WriteLine, notify: Notify,
                 tick: Callable[[], None] | None = None, room: Callable[[], bool] | None = None) -> None:
        self.settings = settings
        self.client = client
        self.concurrency = concurrency
        self.policy = policy
        self.governor = governor
        self.stats = stats
        self._write = write
        self._notify = notify
        self._tick = tick  # the progress display, refreshed every TICK_SECONDS
        self._room = room or (lambda: True)  # False while --ordered holds as many lines as it may
        self._url = settings.url("chat/completions")
        self._backstop = max(settings.first_byte_timeout, settings.idle_timeout) + 1.0
        self._head_timeout = httpx.Timeout(connect=settings.connect_timeout, read=settings.first_byte_timeout,
                                           write=settings.idle_timeout, pool=settings.connect_timeout)
        self._lock = threading.Lock()  # everything below; held briefly, never across a request
        self._changed = threading.Condition(self._lock)
        # SimpleQueue: its put is reentrant, so a signal handler may post to it.
        self._signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._closed = False
        self._flying: dict[int, Job] = {}
        self._retries: list[tuple[float, Job]] = []
        self._next: Job | None = None
        self._source: Iterator[BatchRequest] = iter(())
        self._exhausted = False
        self._orders = 0
        self._stopping = False
        self._over = threading.Event()  # every request has its outcome, or the batch stopped

    # -- the main thread: signals, progress, the end ----------------------------

    def run(self, requests: Iterator[BatchRequest]) -> BatchStats:
        """Send every request, each until it succeeds or fails for good, or the batch stops."""
        self._source = iter(requests)
        threads = [threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
                   for i in range(self.concurrency)]
        threads.append(threading.Thread(target=self._monitor, name="batch-monitor", daemon=True))
        previous = _catch_signals(self._signals)
        try:
            for thread in threads:
                thread.start()
            while not self._over.is_set():
                try:
                    signum = self._signals.get(timeout=TICK_SECONDS)
                except queue.Empty:
                    signum = None
                if signum:  # 0: a worker saying the batch is over
                    with self._lock:
                        terminated = signum == signal.SIGTERM
                        self._stop("terminated" if terminated else "interrupted",
                                   "terminated by SIGTERM" if terminated else "interrupted")
                if self._tick is not None:
                    self._tick()
        finally:
            _restore_signals(previous)
            self._finish()
        if self._error is not None:
            raise self._error
        return self.stats

    def _finish(self) -> None:
        """Every way out: cut what is in flight, keep what completes within DRAIN_SECONDS."""
        with self._lock:
            if self._flying:
                self._stop(self.stats.stopped or "interrupted", self.stats.stop_message or "interrupted")
                deadline = time.monotonic() + DRAIN_SECONDS
                while self._flying and (left := deadline - time.monotonic()) > 0:
                    self._changed.wait(left)
            self._closed = True  # an attempt that ends now is not written: the next run sends it
            self._stopping = True
            self.stats.in_flight = len(self._flying)
            self.stats.ended = time.monotonic()
            self._changed.notify_all()
        self._over.set()
        if self._tick is not None:
            self._tick()

    # -- dispatching, by the workers under the lock ------------------------------

    def _next_job(self) -> Job | None:
        """The next request this worker sends; waits while none may go; None at the end.
        Called with the lock held."""
        while not self._stopping:
            now = time.monotonic()
            job, wait = self._dispatch(now)
            if job is not None:
                return job
            if not self._flying and self._exhausted and self._next is None and not self._retries:
                self._stopping = True  # every request has its outcome: nothing more to send
                self._over.set()
                self._signals.put(0)  # wake the main thread now
                self._changed.notify_all()
                return None
            self._changed.wait(wait)
        return None

    def _dispatch(self, now: float) -> tuple[Job | None, float | None]:
        """A request that may go now, sent; else how long until one may (None: at the
        next answer)."""
        while True:
            job, due = self._candidate(now)
            if job is None:
                return None, due
            delay = self.governor.delay(now, job.tokens)
            if delay is None:
                return None, None  # every slot is busy: the next answer frees one
            if delay > 0:
                return None, delay if due is None else min(delay, due)
            self._take(job)
            if job.watch is not None and (left := job.watch.remaining_total()) is not None and left <= 0:
                self._final(job, total_timeout(job.watch.total or 0.0), None)
                continue
            self._send(job, now)
            return job, None

    def _candidate(self, now: float) -> tuple[Job | None, float | None]:
        """The next request to send (a retry that is due first), and, when there is
        none, how long until the first waiting retry is due."""
        due = self._retries[0][0] - now if self._retries else None
        if due is not None and due <= 0:
            return self._retries[0][1], None
        if self._next is None and not self._exhausted and self._room():
            self._next = self._new_job()
        return self._next, due

    def _new_job(self) -> Job | None:
        request = next(self._source, None)
        if request is None:
            self._exhausted = True
            return None
        body = request.body
        most = body.get("max_tokens") or body.get("max_completion_tokens")
        tokens = estimate_prompt_tokens(body) + (most if isinstance(most, int) and most > 0 else 0)
        job = Job(request, orjson.dumps(body), tokens, self._orders)
        self._orders += 1
        return job

    def _take(self, job: Job) -> None:
        if self._retries and self._retries[0][1] is job:
            heapq.heappop(self._retries)
        else:
            self._next = None

    def _send(self, job: Job, now: float) -> None:
        settings = self.settings
        if job.watch is None:
            job.watch = Watchdog(first_byte=settings.first_byte_timeout, idle=settings.idle_timeout,
                                 total=settings.total_timeout)
        job.timed_out = None
        job.marks = self.governor.sent(now, job.tokens)
        self._flying[job.order] = job
        self.stats.in_flight = len(self._flying)

    def _handle(self, item: Outcome) -> None:
        """An attempt ended: its line, a retry, or the end of the batch (lock held)."""
        job = item.job
        now = time.monotonic()
        self._flying.pop(job.order, None)
        self.stats.in_flight = len(self._flying)
        self.governor.answered(job.marks, item.head, now)
        error = item.error
        if error is None:
            assert item.completion is not None
            self.governor.succeeded()
            self.stats.succeeded += 1
            self.stats.add_usage(item.usage)
            request_id = item.head.header("x-request-id") or None if item.head else None
            self._write(job.order, lines.answered(job.request.custom_id, item.completion, request_id))
            return
        if isinstance(error, Cancelled) or (self._stopping and job.cancelled):
            self._write(job.order, None)  # sent again by the next run
            return
        if _rate_limited(error):
            self.stats.rate_limited += 1
        if error.status == ExitStatus.AUTH:
            self._write(job.order, None)
            self._stop("auth", f"stopped sending, the key is refused ({error.message.rstrip('.')})")
            return
        if error.status == ExitStatus.QUOTA:
            self._write(job.order, None)
            self._stop("quota", f"stopped sending, the account is out of quota ({error.message.rstrip('.')})")
            return
        if error.retryable and job.retries < self.policy.max_retries:
            if self._stopping:
                self._write(job.order, None)  # not failed for good: the next run sends it again
            else:
                self._retry(job, error, item.head, now)
            return
        self._final(job, error, item.head)

    def _retry(self, job: Job, error: AssistersError, head: ResponseHead | None, now: float) -> None:
        try:
            delay = retry_delay(self.policy, job.retries + 1, error, job.waited)
        except TemporaryError as capped:
            self._final(job, capped, head)
            return
        left = job.watch.remaining_total() if job.watch is not None else None
        if left is not None and left < delay:
            self._final(job, total_timeout(job.watch.total or 0.0), head)  # type: ignore[union-attr]
            return
        job.retries += 1
        job.waited += delay
        self.stats.retried += 1
        if _rate_limited(error):
            before = self.governor.limit
            if self.governor.throttled(job.marks, delay, now):
                self._notify(f"assisters: batch: rate limited (HTTP 429); every request waits {delay:.1f} s, "
                             f"concurrency {before} -> {self.governor.limit}")
        job.ready_at = now + delay
        heapq.heappush(self._retries, (job.ready_at, job))

    def _final(self, job: Job, error: AssistersError, head: ResponseHead | None) -> None:
        self.stats.failed[lines.failure_kind(error)] += 1
        request_id = head.header("x-request-id") or None if head is not None else None
        self._write(job.order, lines.failed(job.request.custom_id, error, request_id))

    def _stop(self, reason: str, message: str) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.stats.stopped = reason
        self.stats.stop_message = message
        for job in list(self._flying.values()):
            job.cancelled = True
            exchange = job.exchange
            if exchange is not None:
                exchange.abort()
        for _, job in self._retries:
            self._write(job.order, None)
        self._retries.clear()
        if self._next is not None:  # numbered but never sent
            self._write(self._next.order, None)
            self._next = None
        self._over.set()
        self._signals.put(0)  # wake the main thread, which drains and ends the run
        self._changed.notify_all()

    # -- the workers -----------------------------------------------------------

    def _work(self) -> None:
        """Send, read, then handle the outcome and take the next request under the lock:
        no hand-off to another thread between two requests."""
        job = self._between(None)
        while job is not None:
            try:
                outcome = self._attempt(job)
            except BaseException as exc:  # noqa: BLE001 - a worker must always answer
                error = Cancelled("cancelled") if job.cancelled else job.timed_out or \
                    AssistersError(f"internal error: {type(exc).__name__}: {exc}")
                outcome = Outcome(job, None, error, None)
            job = self._between(outcome)

    def _between(self, outcome: Outcome | None) -> Job | None:
        """Under the lock: handle the attempt that ended, then take the next request."""
        with self._lock:
            if self._closed:
                return None
            try:
                if outcome is not None:
                    self._handle(outcome)
                    self._changed.notify()  # a slot is free, or a retry is queued
                return self._next_job()
            except BaseException as exc:  # noqa: BLE001 - OUTPUT or INPUT failed: end the batch, say why
                if self._error is None:
                    self._error = exc
                self._stop("failed", str(exc))
                return None

    def _attempt(self, job: Job) -> Outcome:
        if job.cancelled:
            return Outcome(job, None, Cancelled("cancelled"), None)
        watch = job.watch
        assert watch is not None
        timing = Timing()
        answer = Answer()
        head: ResponseHead | None = None
        request = OutgoingRequest("POST", self._url, CHAT_HEADERS, job.payload)
        try:
            with open_exchange(self.client, request, timing=timing, watch=watch,
                               timeout=self._timeout(watch)) as exchange:
                head = exchange.head
                exchange.set_read_timeout(self._backstop)  # the monitor enforces first-byte and idle now
                job.exchange = exchange
                if job.cancelled or job.timed_out is not None:
                    exchange.abort()
                consume_chat(exchange, _DISCARD, timing, answer=answer)
                job.finish_by = time.monotonic() + FINISH_SECONDS
                exchange.finish_body(FINISH_BYTES)
            return Outcome(job, answer.completion_object(), None, head, answer.usage)
        except AssistersError as exc:
            return Outcome(job, None, self._why(job, exc), head, answer.usage)
        finally:
            job.exchange = None
            job.finish_by = None

    def _timeout(self, watch: Watchdog) -> httpx.Timeout:
        """This attempt's httpx timeouts: until the head, the first-byte timeout (or
        what is left of the total) is the read timeout."""
        left = watch.remaining_total()
        if left is None or left >= self.settings.first_byte_timeout:
            return self._head_timeout
        settings = self.settings
        return httpx.Timeout(connect=settings.connect_timeout, read=max(0.001, left),
                             write=settings.idle_timeout, pool=settings.connect_timeout)

    @staticmethod
    def _why(job: Job, error: AssistersError) -> AssistersError:
        """The error as the user should see it: a cut the monitor made is its timeout."""
        if job.cancelled:
            return Cancelled("cancelled")
        if isinstance(error, TemporaryError) and not isinstance(error, HTTPStatusError):
            fired = job.timed_out or (job.watch.expired() if job.watch is not None else None)
            if fired is not None:
                return fired
        return error

    # -- the monitor -----------------------------------------------------------

    def _monitor(self) -> None:
        settings = self.settings
        tick = Watchdog(first_byte=settings.first_byte_timeout, idle=settings.idle_timeout,
                        total=settings.total_timeout).tick
        while not self._over.wait(tick):
            now = time.monotonic()
            for job in list(self._flying.values()):
                watch = job.watch
                if job.finish_by is not None and now > job.finish_by and (exchange := job.exchange):
                    exchange.abort()  # the answer is complete: only the connection is lost
                if watch is None or job.timed_out is not None:
                    continue
                fired = watch.check(now)
                if fired is not None:
                    job.timed_out = fired
                    exchange = job.exchange
                    if exchange is not None:
                        exchange.abort()


def _rate_limited(error: AssistersError) -> bool:
    """A 429 that asks to slow down (not one saying the account is out of quota)."""
    return (isinstance(error, HTTPStatusError) and error.http_status == 429
            and error.status != ExitStatus.QUOTA)


def _catch_signals(signals: queue.SimpleQueue[int]) -> dict[int, Any]:
    """SIGINT and SIGTERM become messages to the main thread (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda number, frame: signals.put(number))
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
