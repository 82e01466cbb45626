"""Writing a batch's OUTPUT, and what an OUTPUT from an earlier run already holds.

The rules that make a run resumable after ``kill -9`` at any moment:

* every line is written whole, with one ``write`` to a file opened ``O_APPEND``, and
  reaches the kernel at once (nothing is buffered in the process), so a killed run
  leaves whole lines, and at most a torn last line if the write itself was cut;
* :func:`scan_output` reads OUTPUT before a run, repairs a torn last line (truncates
  it away: that request is sent again) and returns the custom_ids it holds, split into
  done and failed;
* ``--retry-failed`` drops the failed lines with :func:`drop_lines`, which rewrites
  OUTPUT through :func:`~assisters.batch.atomic.atomic_file` (a temporary file beside
  it, renamed over OUTPUT: a kill leaves the old file or the new one), before those
  requests are sent again; so no custom_id ever has two lines;
* one run at a time: the file is locked (``flock``) while a run appends to it.

Every line is scrubbed of secrets (:func:`assisters.redact.scrub_bytes`) before it
is written. :class:`ReorderBuffer` gives ``--ordered`` its input order with a
bounded number of lines held. ``batch results`` writes the provider's results
whole, through :func:`~assisters.batch.atomic.atomic_file` too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson

from assisters.batch.atomic import atomic_file
from assisters.batch.lines import is_failure, parse_line
from assisters.errors import AssistersError, ExitStatus, RequestError
from assisters.redact import scrub_bytes

_SCAN_CHUNK = 1 << 20


@dataclass
class OutputIndex:
    """The custom_ids an OUTPUT already has a line for."""

    done: set[str] = field(default_factory=set)  # every custom_id with a line
    failed: set[str] = field(default_factory=set)  # those whose line records a failure
    lines: int = 0
    repaired: bool = False  # a torn last line was cut away


def scan_output(path: str, *, repair: bool = True) -> OutputIndex:
    """Index OUTPUT (absent: empty), cutting a torn last line away (unless ``repair``
    is false: ``--dry-run`` changes nothing)."""
    index = OutputIndex()
    try:
        handle = open(path, "r+b" if repair else "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return index
    except OSError as exc:
        raise _unusable(path, exc) from None
    with handle:
        offset = 0  # the end of the last whole line
        number = 0
        while True:
            raw = handle.readline()
            if not raw:
                break
            if not raw.endswith(b"\n"):
                if parse_line(raw)[1] is not None:  # whole, only its newline missing (edited by hand)
                    if repair:
                        handle.write(b"\n")
                    raw += b"\n"
                else:  # a write cut by a kill: the request goes again
                    if repair:
                        handle.truncate(offset)
                    index.repaired = True
                    break
            number += 1
            offset += len(raw)
            if raw.strip():
                _index_line(index, raw, path, number)
    return index


def _index_line(index: OutputIndex, raw: bytes, path: str, number: int) -> None:
    line, custom_id = parse_line(raw)
    if line is None or custom_id is None:
        raise RequestError(f"{path}:{number}: not a batch output line (no custom_id); "
                           "is this the right OUTPUT file?")
    index.lines += 1
    index.done.add(custom_id)
    if is_failure(line):
        index.failed.add(custom_id)
    else:
        index.failed.discard(custom_id)


def drop_lines(path: str, custom_ids: set[str]) -> int:
    """Rewrite OUTPUT without the lines of ``custom_ids``, atomically; returns how many went."""
    if not custom_ids:
        return 0
    dropped = 0
    try:
        with open(path, "rb") as source, atomic_file(path, error=_unusable) as target:
            for raw in source:
                if raw.strip() and parse_line(raw)[1] in custom_ids:
                    dropped += 1
                    continue
                target.write(raw)
    except OSError as exc:  # reading it
        raise _unusable(path, exc) from None
    return dropped


class OutputWriter:
    """Writes whole lines to OUTPUT (a file, appended to and locked) or to stdout."""

    def __init__(self, path: str | None, stdout: BinaryIO) -> None:
        self.path = path
        self._stdout = stdout
        self._fd: int | None = None
        self.written = 0
        if path is not None:
            self._fd = _open_locked(path)

    def reopen(self) -> None:
        """OUTPUT was replaced (``drop_lines``): append to, and lock, the new file."""
        assert self.path is not None
        fd = _open_locked(self.path)
        self.close()
        self._fd = fd

    def write(self, line: dict[str, Any]) -> None:
        data = scrub_bytes(orjson.dumps(line) + b"\n")
        if self._fd is None:
            self._stdout.write(data)
            self._stdout.flush()
        else:
            view = memoryview(data)
            while view:  # a regular file takes it in one write; a full disk may not
                view = view[os.write(self._fd, view):]
        self.written += 1

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)  # the lock goes with it
            self._fd = None

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _open_locked(path: str) -> int:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise _unusable(path, exc) from None
    _lock(fd, path)
    return fd


def _lock(fd: int, path: str) -> None:
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AssistersError(f"{path} is being written by another batch run; wait for it to end",
                             ExitStatus.USAGE) from None


def _unusable(path: str | os.PathLike[str], exc: OSError) -> AssistersError:
    return AssistersError(f"cannot use {path} as OUTPUT: {exc.strerror or exc}", ExitStatus.USAGE)


class ReorderBuffer:
    """``--ordered``: lines leave in the order their requests were numbered, holding
    at most ``capacity`` lines that wait for an earlier one."""

    def __init__(self, write: Callable[[dict[str, Any]], None], capacity: int) -> None:
        self._write = write
        self.capacity = capacity
        self._next = 0
        self._held: dict[int, dict[str, Any] | None] = {}

    @property
    def full(self) -> bool:
        return len(self._held) >= self.capacity

    def add(self, order: int, line: dict[str, Any] | None) -> None:
        """The line of request ``order`` (None: it ends without a line); writes what is now in order."""
        self._held[order] = line
        while self._next in self._held:
            ready = self._held.pop(self._next)
            self._next += 1
            if ready is not None:
                self._write(ready)

    def flush(self) -> None:
        """The run ends early: every held line goes out, in order, gaps and all."""
        for order in sorted(self._held):
            line = self._held.pop(order)
            if line is not None:
                self._write(line)
