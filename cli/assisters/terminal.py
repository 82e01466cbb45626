"""The process's streams and the one decision about terminals and colour.

Built once at the edge (the click command) and passed down, so nothing else
calls ``isatty`` or reads ``NO_COLOR``, and tests can build their own.
"""

from __future__ import annotations

import errno
import io
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from assisters import redact, stdio
from assisters.redact import ScrubbingText, ScrubbingWriter
from assisters.visible import visible

SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SPINNER_DELAY = 0.15  # seconds before the first frame, so fast answers never flicker
SPINNER_INTERVAL = 0.08


@dataclass(frozen=True)
class Streams:
    stdin: BinaryIO
    stdout: BinaryIO
    stderr: TextIO
    stdin_is_tty: bool
    stdout_is_tty: bool
    stderr_is_tty: bool
    stdout_styled: bool  # escape codes allowed on stdout
    stderr_styled: bool  # escape codes (colour, spinner) allowed on stderr

    def warn(self, line: str) -> None:
        """A diagnostic line (or lines) on stderr. It may quote the server, so control
        characters are made visible (:func:`assisters.visible.visible`), never executed."""
        self.stderr.write(visible(line) + "\n")
        self.stderr.flush()


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False


def styling_allowed(is_tty: bool, environ: Mapping[str, str]) -> bool:
    """Colour and cursor movement: only on a terminal, never with NO_COLOR or
    TERM=dumb; FORCE_COLOR turns it on even in a pipe (for tests and pagers)."""
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR"):
        return True
    return is_tty and environ.get("TERM") != "dumb"


def system_streams(environ: Mapping[str, str]) -> Streams:
    """The process's streams, made safe by :func:`assisters.stdio.guard` (closed, full or
    non-blocking files); stdout and stderr scrub every secret (:mod:`assisters.redact`)."""
    stdio.guard()
    out_tty, err_tty = _isatty(sys.stdout), _isatty(sys.stderr)
    stderr = sys.stderr if isinstance(sys.stderr, ScrubbingText) else ScrubbingText(sys.stderr)
    return Streams(
        stdin=sys.stdin.buffer,
        stdout=ScrubbingWriter(sys.stdout.buffer),  # type: ignore[arg-type]
        stderr=stderr,  # type: ignore[arg-type]
        stdin_is_tty=_isatty(sys.stdin),
        stdout_is_tty=out_tty,
        stderr_is_tty=err_tty,
        stdout_styled=styling_allowed(out_tty, environ),
        stderr_styled=styling_allowed(err_tty, environ) and err_tty,
    )


def direct_write(out: BinaryIO) -> Callable[[bytes], int | None] | None:
    """The write of the file under ``out`` when ``out`` is a plain buffered file
    (the process's stdout) or the file itself, else None.

    Output that is flushed after every write gains nothing from the buffer, and
    writing to the file itself saves a copy and a call per write. Flush ``out``
    before the first direct write, so what went through it comes first. The
    function may write less than it was given (a signal, a non-blocking file):
    the caller then writes the rest through ``out``, see :func:`write_rest`.
    """
    if type(out) is ScrubbingWriter:
        return _scrubbing_direct_write(out)
    if type(out) is io.FileIO or type(out) is stdio.Output:  # unbuffered (python -u, PYTHONUNBUFFERED)
        return out.write
    if type(out) is not io.BufferedWriter:
        return None
    return out.raw.write  # type: ignore[no-any-return]


def _scrubbing_direct_write(out: ScrubbingWriter) -> Callable[[bytes], int | None] | None:
    """The direct write under a scrubbing stdout: the file's own write while no secret
    is registered (the usual case: a loopback server needs no key), else one that
    scrubs first and writes all of it."""
    inner = direct_write(out.wrapped)
    if inner is None or not redact.active():
        return inner

    def write(data: bytes) -> int:
        scrubbed = out.scrubbed(data)
        written = inner(scrubbed)
        if written != len(scrubbed):
            write_rest(out.wrapped, scrubbed, written)
        return len(data)

    return write


def write_rest(out: BinaryIO, data: bytes, written: int | None) -> None:
    """After a short direct write: the rest through ``out``, then flushed."""
    rest = memoryview(data)[written or 0 :]
    while rest:
        count = out.write(rest)
        if count is None:  # a non-blocking file that takes nothing now, as BufferedWriter says it
            raise BlockingIOError(errno.EAGAIN, "the output is not ready for writing")
        rest = rest[count:]
    out.flush()


def dim(text: str, styled: bool) -> str:
    return f"\033[2m{text}\033[0m" if styled else text


class Spinner:
    """A small waiting indicator on stderr, erased without a trace by ``stop``."""

    def __init__(self, stream: TextIO, label: str = "waiting for the first token") -> None:
        self._stream = stream
        self._label = label
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = False

    def start(self) -> Spinner:
        self._thread = threading.Thread(target=self._run, name="spinner", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        if self._stop.wait(SPINNER_DELAY):
            return
        frame = 0
        while not self._stop.is_set():
            glyph = SPINNER_FRAMES[frame % len(SPINNER_FRAMES)]
            self._stream.write(f"\r{glyph} {self._label}")
            self._stream.flush()
            self._drawn = True
            frame += 1
            self._stop.wait(SPINNER_INTERVAL)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        if self._drawn:
            self._stream.write("\r\033[K")
            self._stream.flush()
