"""The first-byte, idle and total timeouts of one command run.

httpx has one read timeout, applied to every socket read alike, so it cannot
tell "the model is still thinking before its first event" (minutes are normal)
from "the stream went silent half-way" (a dead connection). :class:`Watchdog`
keeps the three apart: the network code marks when it starts and stops waiting,
and a coarse interval timer (``SIGALRM``) checks the deadlines while it waits.
The timer raises :class:`TimeoutFailure` only during a network wait, so a slow
reader on stdout never counts against the server, and the exception unwinds
through httpx like Ctrl-C does, closing the connection.

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

from assisters.errors import TimeoutFailure

_TICK_MAX = 0.25  # seconds; a deadline fires at most this late
_TICK_MIN = 0.01


class Watchdog:
    """Deadlines for the network waits of one run (all attempts together).

    The network code counts ``steps``: one when it starts waiting on the network,
    one when data arrives, so an odd count means "waiting". Counting is all the
    read loop pays; the timer notices a count that has not moved for too long.
    """

    def __init__(self, *, first_byte: float, idle: float, total: float | None = None) -> None:
        self.first_byte = first_byte
        self.idle = idle
        self.total = total
        self.started = time.monotonic()
        self.steps = 0
        self.got_bytes = False  # the current attempt has received body bytes
        self._seen_steps = 0
        self._since = self.started  # when the timer last saw ``steps`` change
        self._attempt_started = self.started
        self._armed = False
        self._previous_handler: Any = None
        self.tick = min(_TICK_MAX, max(_TICK_MIN, min(first_byte, idle, total or first_byte) / 20))

    @property
    def waiting(self) -> bool:
        return self.steps % 2 == 1

    def new_attempt(self) -> None:
        """A new request: the first-byte deadline starts again, and it waits."""
        self._attempt_started = self._since = time.monotonic()
        self.got_bytes = False
        self.steps += 1 if not self.waiting else 2

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
        error = self.check()
        if error is not None:
            self.steps += 1  # this wait ends with the exception; cleanup must not see another
            raise error

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
