"""The response-head, first-byte, idle and total timeouts of one command run.

httpx has one read timeout, applied to every socket read alike, so it cannot
tell "the model is still thinking before its first event" (minutes are normal)
from "the stream went silent half-way" (a dead connection), nor either from "the
server accepted the connection and will never answer". :class:`Watchdog` keeps
them apart: the network code marks when it starts and stops waiting and when the
response head arrives, and a coarse interval timer (``SIGALRM``) checks the
deadlines.

* response head (streamed requests only): from sending the request to the
  status line and headers. Streaming servers send them at once and think
  afterwards, so a short limit (60 s) catches a dead server early; a
  non-streamed request's head comes with the whole answer, so there the
  first-byte timeout covers it.
* first byte: from sending the request to the first byte of the body (300 s:
  a reasoning model may think for minutes before its first event).
* idle: the longest silence once the body has started.
* total: the whole run. It is hard, like ``curl --max-time``: it also fires
  while the process is blocked writing to a stdout nobody reads, and after it
  has, writes to stdout never block again (:func:`assisters.stdio.stop_waiting_for_stdout`).

The first three raise :class:`TimeoutFailure` only during a network wait, so a
slow reader on stdout never counts against the server, and the exception
unwinds through httpx like Ctrl-C does, closing the connection.

Signals reach only the main thread; elsewhere (or without ``setitimer``) the
watchdog stays passive and httpx's read timeout, set to the larger of the
first-byte and idle timeouts, is the only limit.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType, TracebackType
from typing import Any

from assisters import stdio
from assisters.errors import TimeoutFailure

_TICK_MAX = 0.25  # seconds; a deadline fires at most this late
_TICK_MIN = 0.01


class Watchdog:
    """Deadlines for the network waits of one run (all attempts together).

    The network code counts ``steps``: one when it starts waiting on the network,
    one when data arrives, so an odd count means "waiting". Counting is all the
    read loop pays; the timer notices a count that has not moved for too long.
    """

    def __init__(self, *, first_byte: float, idle: float, total: float | None = None,
                 head: float | None = None) -> None:
        self.first_byte = first_byte
        self.idle = idle
        self.total = total
        self.head = head  # None: the first-byte timeout covers the response head too
        self.started = time.monotonic()
        self.steps = 0
        self.got_head = False  # the current attempt has its response head
        self.got_bytes = False  # the current attempt has received body bytes
        self._total_fired = False
        self._seen_steps = 0
        self._since = self.started  # when the timer last saw ``steps`` change
        self._attempt_started = self.started
        self._armed = False
        self._previous_handler: Any = None
        shortest = min(first_byte, idle, total or first_byte, head or first_byte)
        self.tick = min(_TICK_MAX, max(_TICK_MIN, shortest / 20))

    @property
    def waiting(self) -> bool:
        return self.steps % 2 == 1

    def new_attempt(self) -> None:
        """A new request: the first-byte deadline starts again, and it waits."""
        self._attempt_started = self._since = time.monotonic()
        self.got_head = self.got_bytes = False
        self.steps += 1 if not self.waiting else 2

    def response_head(self) -> None:
        """The status line and headers arrived: the wait for them is over."""
        self.got_head = True
        self.stop_waiting()

    def stop_waiting(self) -> None:
        if self.waiting:
            self.steps += 1

    def remaining_total(self) -> float | None:
        if self.total is None:
            return None
        return self.total - (time.monotonic() - self.started)

    def expired(self, now: float | None = None) -> TimeoutFailure | None:
        """The timeout that has fired by ``now``, if any (called from the timer)."""
        now = time.monotonic() if now is None else now
        if self.total is not None and now - self.started >= self.total:
            return total_timeout(self.total)
        if not self.got_head and self.head is not None and now - self._attempt_started >= self.head:
            return TimeoutFailure(
                f"no response head within the response-head timeout ({seconds(self.head)}): the server "
                "accepted the request but did not answer; raise it with --response-head-timeout or "
                "ASSISTERS_RESPONSE_HEAD_TIMEOUT"
            )
        if not self.got_bytes:
            if now - self._attempt_started >= self.first_byte:
                return TimeoutFailure(
                    f"no response within the first-byte timeout ({seconds(self.first_byte)}); raise it "
                    "with --first-byte-timeout or ASSISTERS_FIRST_BYTE_TIMEOUT"
                )
        elif now - self._since >= self.idle:
            return TimeoutFailure(
                f"nothing received for {seconds(self.idle)} (idle timeout); raise it with "
                "--idle-timeout or ASSISTERS_IDLE_TIMEOUT"
            )
        return None

    def check(self, now: float | None = None) -> TimeoutFailure | None:
        """One tick of the timer: note progress since the last tick, and return the
        timeout that has fired if the network code is waiting. Called by the SIGALRM
        handler, or by a monitor thread that watches many requests (``batch run``)."""
        steps = self.steps
        now = time.monotonic() if now is None else now
        if steps != self._seen_steps:  # progress since the last tick
            self._seen_steps = steps
            self._since = now
        if steps % 2 == 1:
            return self.expired(now)
        return None

    def _on_tick(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        error = self.check(now)
        if error is not None:
            self.steps += 1  # this wait ends with the exception; cleanup must not see another
            if self.total is not None and now - self.started >= self.total:
                self._total_fired = True
            raise error
        if (self.steps % 2 == 0 and self.total is not None and not self._total_fired
                and now - self.started >= self.total):
            # Not waiting on the network: the run is busy or blocked writing to stdout. The
            # total timeout is a hard limit, so it ends that too, once.
            self._total_fired = True
            stdio.stop_waiting_for_stdout()
            raise total_timeout(self.total)

    def __enter__(self) -> Watchdog:
        if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGALRM, self._on_tick)
            signal.setitimer(signal.ITIMER_REAL, self.tick, self.tick)
            self._armed = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_waiting()
        if self._armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous_handler or signal.SIG_DFL)
            self._armed = False


def total_timeout(limit: float) -> TimeoutFailure:
    return TimeoutFailure(
        f"the run took longer than the total timeout ({seconds(limit)}); raise it with "
        "--total-timeout or ASSISTERS_TOTAL_TIMEOUT",
        retryable=False,
    )


def seconds(value: float) -> str:
    return f"{value:g} s"
