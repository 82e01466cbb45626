"""What a person sees while a batch runs, on stderr.

* stderr a terminal (and no ``NO_COLOR``, ``TERM=dumb`` or ``--no-progress``): a live
  tqdm bar, done/total, requests/s and ETA from tqdm, then failed, in flight and
  tokens/s; it is erased at the end, when the summary takes its place. tqdm is
  imported here only, when a bar is drawn;
* stderr not a terminal: nothing until the summary, unless ``--progress``, which
  prints one plain line every ``--progress-interval`` seconds (default 10), for logs;
* batch notices (a 429 pausing every request) print above the bar, or as lines.

``-q`` shows none of it. Waiting for a provider's batch (``submit --wait``,
``results --wait``) gets the same kind of bar on a terminal, from the batch's
``request_counts`` at each poll (:class:`WaitBar`), and nothing elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from assisters.batch.states import counts_of
from assisters.batch.summary import BatchStats
from assisters.terminal import Streams
from assisters.visible import one_line


class Progress(Protocol):
    def update(self, stats: BatchStats) -> None: ...

    def notice(self, line: str) -> None: ...

    def close(self) -> None: ...


class Silent:
    """``-q``: nothing at all."""

    def update(self, stats: BatchStats) -> None:
        pass

    def notice(self, line: str) -> None:
        pass

    def close(self) -> None:
        pass


class NoticesOnly(Silent):
    """No progress display; batch notices as lines."""

    def __init__(self, streams: Streams) -> None:
        self._streams = streams

    def notice(self, line: str) -> None:
        self._streams.warn(line)


class PlainLines(NoticesOnly):
    """``--progress`` off a terminal: a line every ``interval`` seconds."""

    def __init__(self, streams: Streams, interval: float) -> None:
        super().__init__(streams)
        self._interval = interval
        self._next = time.monotonic() + interval

    def update(self, stats: BatchStats) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._interval
        wall = stats.elapsed()
        rate = stats.finished / wall if wall > 0 else 0.0
        left = stats.to_send - stats.finished
        eta = f", ETA {left / rate:.0f} s" if rate > 0 and left > 0 else ""
        self._streams.warn(f"batch: {stats.finished}/{stats.to_send} done, {stats.failures} failed, "
                           f"{stats.in_flight} in flight, {rate:.1f} requests/s, "
                           f"{stats.tokens / wall if wall > 0 else 0:.0f} tokens/s{eta}")


class Bar:
    """The live bar on a terminal."""

    def __init__(self, streams: Streams, total: int) -> None:
        from tqdm import tqdm

        tqdm.monitor_interval = 0  # no extra thread: the engine refreshes it twice a second
        self._bar: Any = tqdm(total=total, file=streams.stderr, unit="req", dynamic_ncols=True,
                              leave=False, mininterval=0.2, smoothing=0.1)
        self._streams = streams

    def update(self, stats: BatchStats) -> None:
        done = stats.finished - self._bar.n
        wall = stats.elapsed()
        speed = stats.tokens / wall if wall > 0 else 0.0
        self._bar.set_postfix_str(f"failed {stats.failures}, in flight {stats.in_flight}, "
                                  f"{speed:.0f} tokens/s", refresh=False)
        if done > 0:
            self._bar.update(done)
        else:
            self._bar.refresh()

    def notice(self, line: str) -> None:
        self._bar.write(line, file=self._streams.stderr)

    def close(self) -> None:
        self._bar.close()


def progress_for(streams: Streams, *, total: int, wanted: bool | None, interval: float, quiet: bool,
                 stdout_output: bool) -> Progress:
    """The display for this run: ``wanted`` is ``--progress`` (True), ``--no-progress``
    (False) or neither (None: a bar on a terminal only)."""
    if quiet:
        return Silent()
    if wanted is not False and streams.stderr_styled and not (stdout_output and streams.stdout_is_tty):
        return Bar(streams, total)
    if wanted:
        return PlainLines(streams, interval)
    return NoticesOnly(streams)


class WaitBar:
    """A provider's batch on a terminal while it is waited for: done/total from its
    ``request_counts``, its state and failures; one bar per batch, erased at the end."""

    def __init__(self, streams: Streams) -> None:
        self._streams = streams
        self._bar: Any = None
        self._batch_id: object = None

    def update(self, batch: Mapping[str, Any]) -> None:
        total, completed, failed = counts_of(batch)
        if self._bar is None or batch.get("id") != self._batch_id:
            self.close()
            from tqdm import tqdm

            tqdm.monitor_interval = 0
            self._batch_id = batch.get("id")
            self._bar = tqdm(total=total or None, file=self._streams.stderr, unit="req", dynamic_ncols=True,
                             leave=False, mininterval=0, desc=one_line(str(self._batch_id), 40))
        if total and self._bar.total != total:
            self._bar.total = total
        self._bar.n = completed + failed
        self._bar.set_postfix_str(f"{one_line(str(batch.get('status')), 40)}, failed {failed}", refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def wait_bar(streams: Streams, *, quiet: bool) -> WaitBar | None:
    """The display while waiting: a bar on a terminal (not with ``-q`` or ``NO_COLOR``), else none."""
    return WaitBar(streams) if streams.stderr_styled and not quiet else None
