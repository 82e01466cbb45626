"""Running one batch in the background, through the server's own models.

A runner thread takes a :class:`~assisters.server.state.BatchRecord` through the
states OpenAI's batches go through:

* ``validating`` for ``batch_delay`` seconds, then the input file is checked line by
  line as the API does: a line that is not JSON, lacks ``custom_id``, ``method``,
  ``url`` or ``body``, repeats a ``custom_id``, or names another endpoint makes the
  batch ``failed``, with ``errors`` naming each line (the first 100); so do an empty
  file and one with more than ``max_batch_requests`` requests;
* ``in_progress``: each request is answered by
  :func:`~assisters.server.chat.complete_body` (the code the HTTP endpoint uses),
  ``batch_delay`` seconds spread over the requests so that ``request_counts``
  visibly grows; a body the chat endpoint would refuse (an unknown model, bad
  messages, ``stream: true``) becomes a line of the error file holding the status
  and OpenAI error body it would have had; the ``lorem`` pace does not apply;
* ``finalizing`` then ``completed``, with ``output_file_id`` and ``error_file_id``
  (each only when it has lines);
* ``cancelling`` (a cancel request) then ``cancelled``: the requests already answered
  are in the files, the others nowhere;
* ``expired`` when the completion window (``batch_window``) ends first: the requests
  not run are in the error file with code ``batch_expired``, as OpenAI writes them.

The input is read twice from disk (to validate, then to run), never held in memory.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from assisters.server.api_errors import ApiError
from assisters.server.chat import complete_body
from assisters.server.chat_request import chat_request_from
from assisters.server.options import ServeOptions
from assisters.server.state import BatchRecord, FileStore, ServerState, new_id

MAX_REPORTED_ERRORS = 100
EXPIRED = {"code": "batch_expired",
           "message": "This request could not be executed before the completion window expired."}


class _ServerStopping(Exception):
    """The server shuts down: the runner leaves the batch as it is."""


def start_runner(state: ServerState, record: BatchRecord) -> None:
    record.runner = threading.Thread(target=_run, args=(state, record), name=f"assisters-{record.id}",
                                     daemon=True)
    record.runner.start()


def _run(state: ServerState, record: BatchRecord) -> None:
    try:
        _Runner(state, record).run()
    except _ServerStopping:
        pass
    except Exception as exc:  # noqa: BLE001 - a bug ends the batch as failed; it never stays validating
        problem = _problem("internal_error", f"The batch could not be run: {exc}")
        if not record.move("failed", errors=[problem]):
            record.move("cancelled")


class _Runner:
    def __init__(self, state: ServerState, record: BatchRecord) -> None:
        self.state = state
        self.record = record
        self.options = state.options
        expires_after = record.output_expires_after
        self.output = _ResultFile(state.files, record.id, "output", expires_after)
        self.errors = _ResultFile(state.files, record.id, "error", expires_after)
        self.expired = False

    def run(self) -> None:
        record = self.record
        self._pause(self.options.batch_delay)
        if record.cancelling:
            self._end("cancelled")
            return
        stored = self.state.files.get(record.input_file_id)
        try:
            source = stored.path.open("rb") if stored is not None else None
        except OSError:
            source = None
        if source is None:
            self._fail([_problem("invalid_request", f"Cannot find file {record.input_file_id}.",
                                 param="input_file_id")])
            return
        with source:
            problems, total, model = validate_input(source, record.endpoint, self.options.max_batch_requests)
            if problems:
                self._fail(problems)
                return
            counts = {"total": total, "completed": 0, "failed": 0}
            if record.move("in_progress", counts=counts, model=model):
                source.seek(0)
                self._answer_all(requests_of(source), total)
        self._end(self._outcome())

    def _fail(self, problems: list[dict[str, Any]]) -> None:
        if not self.record.move("failed", errors=problems):
            self._end("cancelled")  # the cancel came first

    def _answer_all(self, requests: Iterator[tuple[str, dict[str, Any]]], total: int) -> None:
        pace = self.options.batch_delay / total
        for custom_id, body in requests:
            self._pause(pace)
            if self.record.cancelling:
                return
            if time.monotonic() >= self.record.deadline:
                self._expire(custom_id, requests)
                return
            self._answer(custom_id, body)

    def _answer(self, custom_id: str, body: dict[str, Any]) -> None:
        status, reply = answer_body(body, self.options)
        ok = status == 200
        line = {"id": new_id("batch_req"), "custom_id": custom_id,
                "response": {"status_code": status, "request_id": uuid.uuid4().hex, "body": reply},
                "error": None}
        (self.output if ok else self.errors).write(line)
        usage = (reply.get("usage") or {}) if ok else {}
        with self.record.lock:
            self.record.counts["completed" if ok else "failed"] += 1
            self.record.tokens["input"] += usage.get("prompt_tokens", 0)
            self.record.tokens["output"] += usage.get("completion_tokens", 0)

    def _expire(self, custom_id: str, rest: Iterator[tuple[str, dict[str, Any]]]) -> None:
        """The window ended: this request and the rest go to the error file unrun."""
        for name in itertools.chain([custom_id], (cid for cid, _ in rest)):
            self.errors.write({"id": new_id("batch_req"), "custom_id": name, "response": None,
                               "error": EXPIRED})
            with self.record.lock:
                self.record.counts["failed"] += 1
        self.expired = True

    def _outcome(self) -> str:
        if self.record.cancelling:
            return "cancelled"
        return "expired" if self.expired else "completed"

    def _end(self, status: str) -> None:
        """Store the result files, then enter the final state (finalizing first when completing)."""
        record = self.record
        if status == "completed" and not record.move("finalizing"):
            status = "cancelled"
        files = {"output_file_id": self.output.store(), "error_file_id": self.errors.store()}
        if not record.move(status, **files):
            record.move("cancelled", **files)

    def _pause(self, seconds: float) -> None:
        """Wait, but no longer than the window, and wake up at once for a cancel or the
        server stopping (which ends the runner: nothing is written after shutdown)."""
        remaining = min(seconds, self.record.deadline - time.monotonic())
        if remaining > 0:
            self.record.wake.wait(remaining)
        if self.state.batches.stopping.is_set():
            raise _ServerStopping


def answer_body(body: dict[str, Any], options: ServeOptions) -> tuple[int, dict[str, Any]]:
    """The status and JSON body ``POST /v1/chat/completions`` would answer ``body`` with."""
    try:
        request = chat_request_from(body, options.default_model)
        if request.stream:
            raise ApiError(400, "Streaming is not supported in a batch.", param="stream")
        return 200, complete_body(request, options)[0]
    except ApiError as err:
        return err.status, err.body()


class _ResultFile:
    """An output or error file, written line by line to disk as the batch runs."""

    def __init__(self, files: FileStore, batch_id: str, kind: str, expires_after: int | None) -> None:
        self._files = files
        self._name = f"{batch_id}_{kind}.jsonl"
        self._expires_after = expires_after
        self._out: IO[bytes] | None = None
        self._path: Path | None = None

    def write(self, line: dict[str, Any]) -> None:
        if self._out is None:
            self._path = self._files.scratch("result-")
            self._out = self._path.open("ab")
        self._out.write(orjson.dumps(line) + b"\n")

    def store(self) -> str | None:
        """The file's id once stored; None when it has no lines (and so no file)."""
        if self._out is None or self._path is None:
            return None
        self._out.close()
        expires_at = int(time.time()) + self._expires_after if self._expires_after else None
        return self._files.adopt(self._path, self._name, "batch_output", expires_at).id


def validate_input(source: IO[bytes], endpoint: str, max_requests: int
                   ) -> tuple[list[dict[str, Any]], int, str | None]:
    """The problems of an input file (empty when it is valid), its request count, and
    the model when every request names the same one."""
    problems: list[dict[str, Any]] = []
    first_line: dict[str, int] = {}
    models: set[Any] = set()
    total = 0
    for number, raw in enumerate(source, 1):
        if not raw.strip():
            continue
        total += 1
        if total > max_requests:
            message = (f"The input file has more than {max_requests} requests, the most one batch "
                       "may hold; split it into several files.")
            problems.append(_problem("too_many_requests", message, line=number))
            break
        problem, line = _line_problem(raw, number, endpoint, first_line)
        if problem is not None:
            problems.append(problem)
            if len(problems) >= MAX_REPORTED_ERRORS:
                break
        elif line is not None:
            models.add(line["body"].get("model"))
    if total == 0:
        problems.append(_problem("empty_file", "The input file holds no requests."))
    model = next(iter(models)) if len(models) == 1 else None
    return problems, total, model if isinstance(model, str) else None


def _line_problem(raw: bytes, number: int, endpoint: str, first_line: dict[str, int]
                  ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _problem("invalid_json_line", "This line is not parseable as valid JSON.", line=number), None
    if not isinstance(line, dict):
        return _problem("invalid_request", "Each line must be a JSON object.", line=number), None
    for name, kind, word in (("custom_id", str, "a string"), ("method", str, "a string"),
                             ("url", str, "a string"), ("body", dict, "an object")):
        if name not in line:
            return _problem("missing_required_parameter", f"Missing required parameter: '{name}'.",
                            param=name, line=number), None
        if not isinstance(line[name], kind):
            return _problem("invalid_request", f"Invalid type for '{name}': expected {word}.",
                            param=name, line=number), None
    if line["method"] != "POST":
        return _problem("invalid_request", f"Invalid value for 'method': '{line['method']}'. "
                        "Only POST is supported.", param="method", line=number), None
    if line["url"] != endpoint:
        return _problem("invalid_url", f"The url '{line['url']}' does not match the batch's endpoint "
                        f"'{endpoint}'.", param="url", line=number), None
    custom_id = line["custom_id"]
    if custom_id in first_line:
        return _problem("duplicate_custom_id", f"The custom_id '{custom_id}' is also used on line "
                        f"{first_line[custom_id]}; each request needs its own.", param="custom_id",
                        line=number), None
    first_line[custom_id] = number
    return None, line


def requests_of(source: IO[bytes]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The ``custom_id`` and ``body`` of each request of a validated input file."""
    for raw in source:
        if raw.strip():
            line = orjson.loads(raw)
            yield line["custom_id"], line["body"]


def _problem(code: str, message: str, *, param: str | None = None, line: int | None = None) -> dict[str, Any]:
    """One entry of a batch's ``errors.data``, as the SDK's ``BatchError`` reads it."""
    return {"code": code, "message": message, "param": param, "line": line}
