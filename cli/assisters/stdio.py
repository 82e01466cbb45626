"""The standard streams made safe, however the process was started.

A process may start with fd 0, 1 or 2 closed (``<&-``, ``>&-``, ``2>&-``), with
stdout on a full disk (``> /dev/full``), or with a file that another process set
non-blocking (a shared pipe or terminal). :func:`guard`, the first thing ``main``
does, turns each of these into a documented outcome instead of a traceback:

* a closed fd 0, 1 or 2 gets ``/dev/null`` opened read-only in its place, so no
  file or socket opened later takes its number (and receives the answer); reading
  a closed stdin is then empty input, and writing a closed stdout fails with
  EBADF, as writing the closed file would;
* stdout's bottom layer is :class:`Output`: a write that fails (ENOSPC, EIO,
  EBADF, ...) raises :class:`~assisters.errors.OutputError` (exit 74, one line on
  stderr); a broken pipe stays :class:`BrokenPipeError` (the quiet 141); on a
  non-blocking stdout a write waits (``poll``) until the file takes all of it, so
  nothing is lost;
* stderr's bottom layer is :class:`Diagnostics`: a write that fails is dropped,
  so a closed or full stderr never changes the exit status;
* stdin's bottom layer is :class:`Input`: a read of a non-blocking stdin waits
  for data, and a read that fails (stdin is a directory) is a
  :class:`~assisters.errors.RequestError` (exit 65), like an unreadable file.

Only the standard library's ``os`` and ``io`` are imported (``select`` when a file
is not ready), so ``--version`` stays fast. Streams that are not the process's own
(a test harness replaced them) are left alone.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any

_STDIN, _STDOUT, _STDERR = 0, 1, 2
_gave_up = False  # see stop_waiting_for_stdout
_PIPE_BUF = 4096  # a write this small never blocks a pipe that polls writable


def stop_waiting_for_stdout() -> None:
    """From now on a write to stdout never blocks: what the file cannot take at once
    is dropped. For after the total timeout, which must end the run even when
    nobody reads stdout (``| sleep 60``)."""
    global _gave_up
    _gave_up = True


def guard() -> None:
    """Make fds 0-2 and ``sys.stdin``/``stdout``/``stderr`` safe (see the module docstring).

    Idempotent; streams already replaced by someone else (click's test runner) stay."""
    for fd in (_STDIN, _STDOUT, _STDERR):
        _fill_if_closed(fd)
    if _ours_to_replace(sys.stdout, sys.__stdout__):
        sys.stdout = _text(Output(_STDOUT), sys.stdout, writing=True)
    if _ours_to_replace(sys.stderr, sys.__stderr__):
        sys.stderr = _text(Diagnostics(_STDERR), sys.stderr, writing=True)
    if _ours_to_replace(sys.stdin, sys.__stdin__):
        sys.stdin = _text(Input(_STDIN), sys.stdin, writing=False)


def _fill_if_closed(fd: int) -> None:
    try:
        os.fstat(fd)
        return
    except OSError:
        pass
    filler = os.open(os.devnull, os.O_RDONLY)
    if filler != fd:  # a lower fd was closed too and took it; that one is filled in its own turn
        os.dup2(filler, fd)
        os.close(filler)


def _ours_to_replace(stream: Any, original: Any) -> bool:
    if stream is None:
        return True
    if stream is not original:
        return False
    raw = getattr(getattr(stream, "buffer", None), "raw", getattr(stream, "buffer", None))
    return not isinstance(raw, (Output, Diagnostics, Input))


def _text(raw: io.RawIOBase, old: Any, *, writing: bool) -> io.TextIOWrapper:
    """A text stream like ``old`` (encoding, errors, buffering), on ``raw``."""
    old_buffer = getattr(old, "buffer", None)
    unbuffered = type(old_buffer) is io.FileIO  # python -u, PYTHONUNBUFFERED: keep it so
    buffer: Any = raw
    if writing and not unbuffered and not isinstance(raw, Diagnostics):
        buffer = io.BufferedWriter(raw)
    elif not writing:
        buffer = io.BufferedReader(raw)
    return io.TextIOWrapper(
        buffer,
        encoding=getattr(old, "encoding", None) or "utf-8",
        errors=getattr(old, "errors", None) or ("backslashreplace" if isinstance(raw, Diagnostics)
                                                else "strict"),
        line_buffering=bool(getattr(old, "line_buffering", False)),
        write_through=writing and (unbuffered or isinstance(raw, Diagnostics)),
    )


def _wait(fd: int, writing: bool) -> None:
    """Until ``fd`` is ready (a non-blocking file said EAGAIN)."""
    import select

    poller = select.poll()
    poller.register(fd, select.POLLOUT if writing else select.POLLIN)
    poller.poll()


class _File(io.RawIOBase):
    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        try:
            return os.isatty(self._fd)
        except OSError:
            return False


class Output(_File):
    """stdout: every byte is written, or :class:`OutputError` says why not."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if _gave_up:
            return self._write_what_fits(data)
        try:
            written = os.write(self._fd, data)  # the usual case: all of it at once
            if written == len(data):
                return written
        except BlockingIOError:
            written = 0
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise output_error(exc) from None
        return self._write_rest(data, written)

    def _write_rest(self, data: Any, written: int) -> int:
        """After a short write (a signal, a non-blocking file that is full): the rest,
        waiting until the file can take it."""
        view = memoryview(data).cast("B")
        rest = view[written:]
        while rest:
            _wait(self._fd, writing=True)
            try:
                rest = rest[os.write(self._fd, rest):]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                raise
            except OSError as exc:
                raise output_error(exc) from None
        return view.nbytes

    def _write_what_fits(self, data: Any) -> int:
        import select

        view = memoryview(data).cast("B")
        poller = select.poll()
        poller.register(self._fd, select.POLLOUT)
        rest = view
        try:
            while rest and poller.poll(0):
                rest = rest[os.write(self._fd, rest[:_PIPE_BUF]):]
        except BlockingIOError:
            pass
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise output_error(exc) from None
        return view.nbytes


def output_error(exc: OSError) -> Exception:
    """A failed write to stdout as the user sees it (exit 74)."""
    import errno

    from assisters.errors import OutputError

    reason = "stdout is closed" if exc.errno == errno.EBADF else (exc.strerror or str(exc))
    return OutputError(f"cannot write to stdout: {reason}")


class Diagnostics(_File):
    """stderr: written when it can be, silently dropped when it cannot."""

    _failed = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        if self._failed:
            return size
        rest = memoryview(data).cast("B")
        while rest:
            try:
                rest = rest[os.write(self._fd, rest):]
            except BlockingIOError:
                _wait(self._fd, writing=True)
            except OSError:  # closed, full, a broken pipe: diagnostics cannot change the outcome
                self._failed = True
                break
        return size


class Input(_File):
    """stdin: a non-blocking one is waited on; a read error is the user's input problem."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            try:
                return os.readv(self._fd, [buffer])
            except BlockingIOError:
                _wait(self._fd, writing=False)
            except OSError as exc:
                from assisters.errors import RequestError

                raise RequestError(f"cannot read stdin: {exc.strerror or exc}") from None
