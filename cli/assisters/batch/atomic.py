"""A file that appears whole or not at all: written to a temporary file beside it,
scrubbed of secrets on the way (:class:`~assisters.redact.StreamScrubber`), and
renamed over the destination only once complete.

The one implementation of an atomic write in the package: ``batch results`` and
``submit --wait -o`` write merged results with it, and ``batch run
--retry-failed`` rewrites OUTPUT with it (:func:`~assisters.batch.output.drop_lines`).

An interrupted download, merge or rewrite (a broken connection, Ctrl-C, a full
disk, ``kill -9``) leaves the destination as it was and no half file: the
temporary file is removed on every way out Python sees, and after a kill only a
hidden ``.NAME.*.part`` can remain, never a torn NAME. The bytes are synced before
the rename and the directory after it, so a crash of the machine cannot leave a
renamed but empty file either. A new file is private (mode 0600), like the model
cache: model answers are the user's data; a file that already exists keeps its
mode. A failure to write raises what ``error`` makes of it
(:func:`cannot_write`, a :class:`~assisters.errors.RequestError` naming the file,
by default).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from assisters.errors import AssistersError, RequestError
from assisters.redact import StreamScrubber

WriteError = Callable[[Path, OSError], AssistersError]


def cannot_write(dest: Path, exc: OSError) -> AssistersError:
    return RequestError(f"cannot write {dest}: {exc.strerror or exc}")


class ScrubbedFile:
    """What :func:`atomic_file` yields: ``write`` scrubs, ``written`` counts the bytes given."""

    def __init__(self, out: BinaryIO, dest: Path, error: WriteError = cannot_write) -> None:
        self._out = out
        self._dest = dest
        self._error = error
        self._scrubber = StreamScrubber()
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        try:
            self._out.write(self._scrubber.feed(data))
        except OSError as exc:
            raise self._error(self._dest, exc) from None

    def finish(self) -> None:
        try:
            self._out.write(self._scrubber.finish())
            self._out.flush()
            os.fsync(self._out.fileno())  # the rename must not land before the bytes do
        except OSError as exc:
            raise self._error(self._dest, exc) from None


@contextmanager
def atomic_file(dest: Path | str, *, error: WriteError = cannot_write) -> Iterator[ScrubbedFile]:
    """Write ``dest`` through a temporary file in its directory, renamed at the end."""
    dest = Path(dest)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as exc:
        raise error(dest, exc) from None
    try:
        with contextlib.suppress(OSError):  # absent (a new file) or unreadable: private
            os.fchmod(fd, stat.S_IMODE(dest.stat().st_mode))  # a rewrite keeps the file's mode
        with os.fdopen(fd, "wb") as out:
            writer = ScrubbedFile(out, dest, error)
            yield writer
            writer.finish()
        try:
            os.replace(temp, dest)
        except OSError as exc:
            raise error(dest, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    sync_directory(dest.parent)


def sync_directory(directory: Path | str) -> None:
    """Make a rename in ``directory`` durable (best effort: not every system can)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
