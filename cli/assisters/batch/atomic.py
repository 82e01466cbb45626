"""A file that appears whole or not at all: written to a temporary file beside it,
scrubbed of secrets on the way (:class:`~assisters.redact.StreamScrubber`), and
renamed over the destination only once complete.

An interrupted download or merge (a broken connection, Ctrl-C, a full disk)
leaves the destination as it was and no half file: the temporary file is
removed on every way out. The file is private (mode 0600), like the model cache:
model answers are the user's data. A failure to write is a
:class:`~assisters.errors.RequestError` naming the file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from assisters.errors import RequestError
from assisters.redact import StreamScrubber


class ScrubbedFile:
    """What :func:`atomic_file` yields: ``write`` scrubs, ``written`` counts the bytes given."""

    def __init__(self, out: BinaryIO, dest: Path) -> None:
        self._out = out
        self._dest = dest
        self._scrubber = StreamScrubber()
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        try:
            self._out.write(self._scrubber.feed(data))
        except OSError as exc:
            raise cannot_write(self._dest, exc) from None

    def finish(self) -> None:
        try:
            self._out.write(self._scrubber.finish())
            self._out.flush()
            os.fsync(self._out.fileno())  # the rename must not land before the bytes do
        except OSError as exc:
            raise cannot_write(self._dest, exc) from None


def cannot_write(dest: Path, exc: OSError) -> RequestError:
    return RequestError(f"cannot write {dest}: {exc.strerror or exc}")


@contextmanager
def atomic_file(dest: Path) -> Iterator[ScrubbedFile]:
    """Write ``dest`` through a temporary file in its directory, renamed at the end."""
    dest = Path(dest)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as exc:
        raise cannot_write(dest, exc) from None
    try:
        with os.fdopen(fd, "wb") as out:
            writer = ScrubbedFile(out, dest)
            yield writer
            writer.finish()
        try:
            os.replace(temp, dest)
        except OSError as exc:
            raise cannot_write(dest, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
