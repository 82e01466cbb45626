"""The conversation store: one append-only JSON Lines file per conversation.

Where: ``$XDG_DATA_HOME/assisters/conversations/ID.jsonl`` (default
``~/.local/share/assisters/conversations/``); the folder is private (0700) and
so is each file (0600).

One line per record, appended and never rewritten:

* a message: ``role`` (``system``, ``user``, ``assistant``), ``content`` and
  ``time`` (UTC, ISO 8601); a user message also has the ``model`` it was sent
  to; an answer has ``model``, ``usage``, ``finish_reason`` and ``timing`` as
  the server gave them, ``reasoning_content`` when there was any, and
  ``interrupted: true`` (Ctrl-C), ``incomplete: true`` with ``error`` (the
  stream failed) when it did not end normally. A ``system`` line sets the system
  prompt from there on (``""``: none).
* an edit of the history, ``{"event": "undo"}`` (drops the last exchange) or
  ``{"event": "retry"}`` (drops the last answer, a new one follows): the file
  stays append-only, so what was said is never lost.

Crash safety: each record is one whole line written under an exclusive
``flock`` on a file opened with ``O_APPEND``, so two processes appending to the
same conversation never interleave; a line cut by ``kill -9`` or a full disk
is the last one, it is ignored on load, and the next append starts on a fresh
line (a line cut so is skipped on load wherever it is). A line is one
``write``, except a long answer that a one-shot chat spooled to disk
(:class:`SpooledText`): its line is copied in blocks, still under the lock.
Every line goes through the secret scrubber (:mod:`assisters.redact`): no
registered secret is ever stored, even one that a prompt or an answer quoted.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from assisters.errors import AssistersError, ExitStatus
from assisters.redact import StreamScrubber, scrub_bytes

SUFFIX = ".jsonl"
_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")


class ConversationNotFound(AssistersError):
    """``-c`` with nothing stored, or an id that names no conversation (a usage error)."""

    status = ExitStatus.USAGE


class StoreError(AssistersError):
    """The store cannot be read or written (a configuration problem: permissions, disk)."""

    status = ExitStatus.CONFIG


def data_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME", "~")) / ".local" / "share")
    return Path(base).expanduser() / "assisters" / "conversations"


def state_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/assisters`` (``~/.local/state/assisters``): the input history."""
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")) / ".local" / "state")
    return Path(base).expanduser() / "assisters"


def now() -> str:
    """The time of a record: UTC, ISO 8601, milliseconds."""
    seconds = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"


def new_id() -> str:
    """Sortable by creation time, short enough to type: ``20250102-153045-7f3a``."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime()) + "-" + os.urandom(2).hex()


class Loaded:
    """A conversation's records, and how many damaged lines inside the file were skipped.

    (Plain classes here and in the modules one-shot ``chat`` loads: a dataclass
    costs a millisecond of start-up to define.)"""

    __slots__ = ("damaged", "records")

    def __init__(self, records: list[dict[str, Any]], damaged: int) -> None:
        self.records = records
        self.damaged = damaged


class ConversationFile:
    """One conversation's file. It is created by the first append, so a session
    that never sent anything leaves nothing behind."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.id = path.name[: -len(SUFFIX)]

    def exists(self) -> bool:
        return self.path.is_file()

    def append(self, record: Mapping[str, Any]) -> None:
        """One record as one line under the lock: one write, or blocks when a value
        is a :class:`SpooledText`."""
        if any(type(value) is SpooledText for value in record.values()):
            self._write_blocks(_line_blocks(record))
        else:
            self._write_blocks((scrub_bytes(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)),))

    def _write_blocks(self, blocks: Iterable[bytes]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot write the conversation {self.path}: {exc.strerror}") from None
        try:
            with _locked(fd):
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    _write_all(fd, b"\n")  # a line cut by a crash stays alone, and is skipped on load
                for block in blocks:
                    _write_all(fd, block)
        except OSError as exc:
            raise StoreError(f"cannot write the conversation {self.path}: {exc.strerror}") from None
        finally:
            os.close(fd)

    def load(self) -> Loaded:
        """Every whole line; a last line without its newline (cut by a crash) is ignored."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return Loaded([], 0)
        except OSError as exc:
            raise StoreError(f"cannot read the conversation {self.path}: {exc.strerror}") from None
        lines = data.split(b"\n")
        lines.pop()  # after the last newline: empty, or a torn line
        records, damaged = [], 0
        for line in lines:
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                damaged += 1
        return Loaded(records, damaged)


class SpooledText:
    """A long string value kept in an unnamed file until its record's line is
    written: JSON-escaped, as the inside of a JSON string (escaping is per
    character, so pieces escaped one by one join into one valid string).

    The file lives in the conversation's folder (private, on disk rather than a
    ``tmpfs``) and has no name, so a crash leaves nothing behind."""

    BLOCK = 1 << 16

    def __init__(self, folder: Path) -> None:
        import tempfile  # only for a long answer

        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise StoreError(f"cannot write a spool file in {folder}: {exc.strerror}") from None
        self.chars = 0

    def write(self, text: str) -> None:
        try:
            self._file.write(memoryview(orjson.dumps(text))[1:-1])  # no copy of a long text
        except OSError as exc:
            raise StoreError(f"cannot write a spool file: {exc.strerror}") from None
        self.chars += len(text)

    def escaped_blocks(self) -> Iterator[bytes]:
        self._file.flush()
        self._file.seek(0)
        while block := self._file.read(self.BLOCK):
            yield block

    def close(self) -> None:
        self._file.close()

    def __bool__(self) -> bool:
        return self.chars > 0


def _line_blocks(record: Mapping[str, Any]) -> Iterator[bytes]:
    """A record's line in blocks, its :class:`SpooledText` values copied from their
    files, every block through one scrubber (a secret split between blocks too)."""
    scrubber = StreamScrubber()
    separator = b"{"
    for key, value in record.items():
        if type(value) is SpooledText:
            yield scrubber.feed(separator + orjson.dumps(key) + b':"')
            for block in value.escaped_blocks():
                yield scrubber.feed(block)
            yield scrubber.feed(b'"')
        else:
            yield scrubber.feed(separator + orjson.dumps({key: value})[1:-1])
        separator = b","
    yield scrubber.feed(b"}\n" if separator == b"," else b"{}\n")
    yield scrubber.finish()


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not Unix: appends are still one write each
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Store:
    """The folder of conversations."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Store:
        return cls(data_dir(environ))

    def new(self) -> ConversationFile:
        return ConversationFile(self.root / (new_id() + SUFFIX))

    def files(self) -> list[ConversationFile]:
        """Every conversation, the most recently written last."""
        try:
            paths = [p for p in self.root.iterdir() if p.name.endswith(SUFFIX) and p.is_file()]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"cannot read the conversation store {self.root}: {exc.strerror}") from None
        return [ConversationFile(p) for p in sorted(paths, key=_mtime_then_name)]

    def latest(self) -> ConversationFile:
        """For ``-c``: the conversation written to most recently."""
        files = self.files()
        if not files:
            raise ConversationNotFound(f"no conversation is stored yet (in {self.root})")
        return files[-1]

    def find(self, wanted: str) -> ConversationFile:
        """A conversation by its id, or by the start of it when only one id starts so."""
        if not _ID.match(wanted):
            raise ConversationNotFound(f"no conversation '{wanted}' (an id looks like 20250102-153045-7f3a)")
        exact = self.root / (wanted + SUFFIX)
        if exact.is_file():
            return ConversationFile(exact)
        matches = [f for f in self.files() if f.id.startswith(wanted)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            ids = ", ".join(f.id for f in matches[:5])
            raise ConversationNotFound(f"'{wanted}' could be any of {len(matches)} conversations: {ids}")
        raise ConversationNotFound(f"no conversation '{wanted}' in {self.root} "
                                   "(see: assisters conversations list)")

    def remove(self, wanted: str) -> ConversationFile:
        conversation = self.find(wanted)
        try:
            conversation.path.unlink()
        except OSError as exc:
            raise StoreError(f"cannot remove {conversation.path}: {exc.strerror}") from None
        return conversation


def _mtime_then_name(path: Path) -> tuple[float, str]:
    try:
        return path.stat().st_mtime, path.name
    except OSError:
        return 0.0, path.name
