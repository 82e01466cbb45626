"""What every request handler of one server shares: the options, the counters
tests assert on, the stop signal, the open connections, and the data of the
Files and Batches API.

Files live in a temporary directory made on the first upload and removed when
the server stops (:class:`FileStore`), so memory does not grow with what is
stored; a batch is a :class:`BatchRecord`, changed by its runner thread
(:mod:`~assisters.server.batch_runner`) and read by the handlers, under its lock.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import string
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assisters.server.options import ServeOptions
from assisters.server.rate_limit import AccountLimits

MAX_STORED_BYTES = 4 * 1024 * 1024 * 1024  # all files of one server together (a temp dir on disk)
MAX_BATCHES = 10_000  # batches one server remembers
CANCELLABLE = ("validating", "in_progress", "finalizing")
TERMINAL = ("completed", "failed", "expired", "cancelled")
_BASE62 = string.ascii_letters + string.digits


def new_id(kind: str) -> str:
    """An id shaped like OpenAI's: ``file-`` and 22 letters or digits, ``batch_`` or
    ``batch_req_`` and 32 hex digits."""
    if kind == "file":
        return "file-" + "".join(secrets.choice(_BASE62) for _ in range(22))
    return f"{kind}_{uuid.uuid4().hex}"


class ServerState:
    """``requests_seen`` counts chat requests received, ``streams_seen`` the streaming
    answers begun (the count ``drop_times`` uses), ``disconnects`` the streams the
    client abandoned, ``active_streams`` the streams in progress."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.requests_seen = 0
        self.streams_seen = 0
        self.disconnects = 0
        self.active_streams = 0
        self.api_requests_seen = 0
        self.connections_opened = 0  # a client that reuses its connections keeps this low
        self.stopping = threading.Event()
        self.files = FileStore()
        self.batches = BatchTable()
        self.limits = AccountLimits(options)  # rate limits, quota, overload; what each prompt was sent
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()

    def note_request(self) -> int:
        """Count a chat request; its 1-based number decides whether a failure is injected."""
        with self._lock:
            self.requests_seen += 1
            return self.requests_seen

    def note_api_request(self) -> int:
        """Count a Files/Batches API request; its number decides whether a failure is injected."""
        with self._lock:
            self.api_requests_seen += 1
            return self.api_requests_seen

    def note_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1

    def stream_started(self) -> int:
        """Count a streaming answer; its 1-based number decides whether it may be cut."""
        with self._lock:
            self.active_streams += 1
            self.streams_seen += 1
            return self.streams_seen

    def stream_ended(self) -> None:
        with self._lock:
            self.active_streams -= 1

    def track(self, connection: socket.socket) -> None:
        with self._lock:
            self.connections_opened += 1
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Wake handlers blocked reading an idle keep-alive connection or writing a stream."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """The server stops: batch runners give up, then the stored files are removed."""
        self.batches.stop_runners()
        self.files.close()


@dataclass
class StoredFile:
    """One file of the Files API: what ``GET /files/{id}`` describes, and where its bytes are."""

    id: str
    filename: str
    purpose: str
    bytes: int
    path: Path
    created_at: int = field(default_factory=lambda: int(time.time()))
    expires_at: int | None = None


class FileStore:
    """The files, on disk in a temporary directory for the server's lifetime."""

    def __init__(self, max_total_bytes: int = MAX_STORED_BYTES) -> None:
        self.max_total_bytes = max_total_bytes
        self._files: dict[str, StoredFile] = {}  # in upload order
        self._dir: Path | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def directory(self) -> Path | None:
        """Where the files are (None until the first one)."""
        return self._dir

    def room_for(self, size: int) -> bool:
        with self._lock:
            return sum(f.bytes for f in self._files.values()) + size <= self.max_total_bytes

    def scratch(self, prefix: str) -> Path:
        """A new empty file in the store's directory, for a writer to fill and :meth:`adopt`."""
        with self._lock:
            if self._closed:
                raise OSError("the server is stopping")
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="assisters-serve-"))
            fd, name = tempfile.mkstemp(prefix=prefix, dir=self._dir)
        os.close(fd)
        return Path(name)

    def add(self, data: bytes, filename: str, purpose: str, expires_at: int | None) -> StoredFile:
        path = self.scratch("upload-")
        path.write_bytes(data)
        return self.adopt(path, filename, purpose, expires_at)

    def adopt(self, path: Path, filename: str, purpose: str, expires_at: int | None) -> StoredFile:
        """Make the written file ``path`` a stored file with a new id."""
        stored = StoredFile(new_id("file"), filename, purpose, path.stat().st_size, path,
                            expires_at=expires_at)
        with self._lock:
            self._files[stored.id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(file_id)

    def listing(self) -> list[StoredFile]:
        with self._lock:
            return list(self._files.values())

    def delete(self, file_id: str) -> bool:
        """Forget the file; a batch runner that has it open still reads it to the end (POSIX)."""
        with self._lock:
            stored = self._files.pop(file_id, None)
        if stored is None:
            return False
        with contextlib.suppress(OSError):
            stored.path.unlink()
        return True

    def close(self) -> None:
        with self._lock:
            directory, self._dir = self._dir, None
            self._closed = True
            self._files.clear()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


@dataclass
class BatchRecord:
    """One batch as the server keeps it; :mod:`~assisters.server.batches` shows it as
    the OpenAI object. Changed by its runner and by a cancel, always under ``lock``."""

    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    created_at: int
    expires_at: int
    deadline: float  # time.monotonic() when it expires
    metadata: dict[str, str] | None = None
    output_expires_after: int | None = None  # seconds, for the output and error files
    status: str = "validating"
    times: dict[str, int] = field(default_factory=dict)  # in_progress_at, completed_at, ...
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})
    tokens: dict[str, int] = field(default_factory=lambda: {"input": 0, "output": 0})
    errors: list[dict[str, Any]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    model: str | None = None
    wake: threading.Event = field(default_factory=threading.Event)  # a cancel, or the server stopping
    lock: threading.Lock = field(default_factory=threading.Lock)
    runner: threading.Thread | None = None

    def move(self, status: str, **changes: Any) -> bool:
        """Enter ``status`` now (setting its ``<status>_at`` time) with other changes at once.

        Refused (False) while the batch is cancelling, except to become cancelled: a
        cancel that arrived wins over the runner's next step."""
        with self.lock:
            if self.status == "cancelling" and status != "cancelled":
                return False
            for name, value in changes.items():
                setattr(self, name, value)
            self.status = status
            self.times[f"{status}_at"] = int(time.time())
            return True

    def cancel(self) -> str:
        """Ask the runner to stop, if the batch can still be cancelled; the status it had."""
        with self.lock:
            before = self.status
            if before in CANCELLABLE:
                self.status = "cancelling"
                self.times["cancelling_at"] = int(time.time())
                self.wake.set()
            return before

    @property
    def cancelling(self) -> bool:
        with self.lock:
            return self.status == "cancelling"


class BatchTable:
    """The batches, newest last."""

    def __init__(self) -> None:
        self._batches: dict[str, BatchRecord] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def add(self, record: BatchRecord) -> bool:
        """Remember a new batch; False when the table is full."""
        with self._lock:
            if len(self._batches) >= MAX_BATCHES:
                return False
            self._batches[record.id] = record
            return True

    def get(self, batch_id: str) -> BatchRecord | None:
        with self._lock:
            return self._batches.get(batch_id)

    def newest_first(self) -> list[BatchRecord]:
        with self._lock:
            return list(reversed(self._batches.values()))

    def stop_runners(self, timeout: float = 2.0) -> None:
        """Wake every runner so it gives up, and give them a moment to end."""
        self.stopping.set()
        records = self.newest_first()
        for record in records:
            record.wake.set()
        deadline = time.monotonic() + timeout
        for record in records:
            if record.runner is not None:
                record.runner.join(max(0.0, deadline - time.monotonic()))
