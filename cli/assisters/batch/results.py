"""A provider batch's results as one file: the output file and the error file,
downloaded and merged into one OpenAI Batch output line per ``custom_id``.

* The provider's lines are kept as they are (the same format ``batch run``
  writes); a second line for a ``custom_id`` already written is dropped and counted.
* Unordered, the output file's lines come first, then the error file's, each in
  the provider's order (which OpenAI does not promise to be the input's).
* Ordered by the input's ``custom_id`` list, each id gets its line in that order,
  and an id the provider returned nothing for (the batch was cancelled or lost it)
  gets a line saying so, ``{"id": null, "custom_id": ..., "response": null,
  "error": {"code": "batch_cancelled" | "result_missing", "message": ...}}``, so the
  file has exactly one line per input request. Lines for ids the input does not
  have come last.
* Several batches (the parts of one ``submit --split``) merge into one file, their
  files in the order given.
* Memory holds an index of the ids, never the lines: the downloads wait in a
  private temporary directory beside the destination, which is written
  atomically (:func:`~assisters.batch.atomic.atomic_file`) and scrubbed of secrets;
  results for stdout wait in the system's temporary directory and go out scrubbed
  too (stdout is a :class:`~assisters.redact.ScrubbingWriter`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from assisters.batch.atomic import atomic_file
from assisters.batch.lines import is_failure, parse_line
from assisters.batch.provider import BatchClient
from assisters.batch.states import error_summary, state_of
from assisters.errors import AssistersError, ExitStatus, ProtocolError, RequestError
from assisters.visible import one_line

MAX_LINE_BYTES = 64 * 1024 * 1024  # one result line; a whole completion body fits many times over
NOT_RUN = {  # the line made up for an id the provider returned nothing for, by batch state
    "cancelled": ("batch_cancelled", "This request was not run: the batch was cancelled."),
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
}
MISSING = ("result_missing", "The provider returned no result for this request.")
KINDS = ("output", "error")


class Writer(Protocol):
    def write(self, data: bytes) -> object: ...


class ResultsNotReady(AssistersError):
    """The batch has no results to download (yet, or ever)."""


@dataclass
class MergeReport:
    lines: int = 0  # written
    from_output: int = 0
    from_errors: int = 0
    failures: int = 0  # lines that record a failed request (made-up ones included)
    filled: list[str] = field(default_factory=list)  # ids with no line from the provider
    duplicates: int = 0  # second lines for an id, dropped
    unexpected: int = 0  # lines for ids the input does not have (kept, at the end)


def download_results(client: BatchClient, batches: Sequence[dict[str, Any]], dest: Path | Writer, *,
                     order: Sequence[str] | None = None) -> MergeReport:
    """Download the batches' output and error files and merge them into ``dest``: a
    file (written atomically) or a stream (stdout)."""
    for batch in batches:
        if not state_of(batch).has_results:
            raise not_ready(batch)
    where = dest.parent if isinstance(dest, Path) else None
    try:
        scratch = tempfile.TemporaryDirectory(prefix=f".{dest.name}." if isinstance(dest, Path) else
                                              "assisters-results-", dir=where)
    except OSError as exc:
        raise RequestError(f"cannot write {dest if where else 'a temporary file'}: {exc.strerror}") from None
    with scratch:
        sources: list[tuple[str, Path]] = []
        for number, batch in enumerate(batches):
            for kind in KINDS:
                file_id = batch.get(f"{kind}_file_id")
                if isinstance(file_id, str) and file_id:
                    path = Path(scratch.name) / f"{number}-{kind}"
                    client.download(file_id, path)
                    sources.append((kind, path))
        not_run = next((NOT_RUN[state_of(b).name] for b in batches if state_of(b).name in NOT_RUN), MISSING)
        if isinstance(dest, Path):
            return merge_results(sources, dest, order=order, not_run=not_run)
        return merge_into(sources, dest, order=order, not_run=not_run)


def not_ready(batch: Mapping[str, Any]) -> ResultsNotReady:
    state = state_of(batch)
    ident = one_line(str(batch.get("id")), 200)
    if state.phase == "failed":
        reasons = "; ".join(error_summary(batch, limit=3)) or "no reason given"
        return ResultsNotReady(f"batch {ident} failed, so it has no results: {reasons}", ExitStatus.REJECTED)
    return ResultsNotReady(f"batch {ident} is still {one_line(state.name, 80)}: wait for it with "
                           f"`assisters batch results {ident} --wait`, or ask again once "
                           f"`assisters batch status {ident}` no longer exits 75", ExitStatus.TEMPORARY)


def merge_results(sources: Sequence[tuple[str, Path]], dest: Path, *, order: Sequence[str] | None = None,
                  not_run: tuple[str, str] = MISSING) -> MergeReport:
    """Merge result files (``("output" | "error", path)``, in that order) into ``dest``,
    atomically; ``not_run`` is the error a line made up for an id without one gets."""
    with atomic_file(dest) as out:
        return merge_into(sources, out, order=order, not_run=not_run)


def merge_into(sources: Sequence[tuple[str, Path]], out: Writer, *, order: Sequence[str] | None = None,
               not_run: tuple[str, str] = MISSING) -> MergeReport:
    """The merge itself, written line by line to ``out``."""
    report = MergeReport()
    opened: list[_Source] = []
    try:
        for kind, path in sources:
            try:
                opened.append(_Source(kind, path.open("rb")))
            except OSError as exc:
                raise RequestError(f"cannot read {path}: {exc.strerror}") from None
        if order is None:
            _merge_in_file_order(opened, out, report)
        else:
            _merge_in_input_order(opened, out, report, order, not_run)
    finally:
        for source in opened:
            source.file.close()
    return report


@dataclass
class _Source:
    kind: str  # "output" or "error"
    file: IO[bytes]


@dataclass(frozen=True)
class _Found:
    source: _Source
    offset: int
    length: int
    failed: bool


def _merge_in_file_order(sources: list[_Source], out: Writer, report: MergeReport) -> None:
    seen: set[str] = set()
    for source in sources:
        for line, custom_id, _offset, failed in _lines(source):
            if custom_id in seen:
                report.duplicates += 1
                continue
            seen.add(custom_id)
            _emit(out, line, report, source.kind, failed)


def _merge_in_input_order(sources: list[_Source], out: Writer, report: MergeReport,
                          order: Sequence[str], not_run: tuple[str, str]) -> None:
    where: dict[str, _Found] = {}
    for source in sources:
        for line, custom_id, offset, failed in _lines(source):
            if custom_id in where:
                report.duplicates += 1
            else:
                where[custom_id] = _Found(source, offset, len(line), failed)
    wanted = set(order)
    written: set[str] = set()
    for custom_id in order:
        if custom_id in written:
            continue
        written.add(custom_id)
        found = where.get(custom_id)
        if found is None:
            report.filled.append(custom_id)
            code, message = not_run
            error = {"code": code, "message": message}
            made_up = {"id": None, "custom_id": custom_id, "response": None, "error": error}
            _emit(out, orjson.dumps(made_up), report, None, True)
            continue
        _emit(out, _read_at(found), report, found.source.kind, found.failed)
    for custom_id, found in where.items():
        if custom_id not in wanted:
            report.unexpected += 1
            _emit(out, _read_at(found), report, found.source.kind, found.failed)


def _read_at(found: _Found) -> bytes:
    found.source.file.seek(found.offset)
    return found.source.file.read(found.length)


def _lines(source: _Source) -> Iterator[tuple[bytes, str, int, bool]]:
    """Each result line (without its line end), its custom_id, where it starts, and
    whether it records a failure."""
    source.file.seek(0)
    offset = 0
    number = 0
    while raw := source.file.readline(MAX_LINE_BYTES + 1):
        number += 1
        start, offset = offset, offset + len(raw)
        if len(raw) > MAX_LINE_BYTES:
            raise ProtocolError(f"line {number} of the {source.kind} file is over {MAX_LINE_BYTES} bytes")
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        parsed, custom_id = parse_line(line)
        if parsed is None or custom_id is None:
            raise ProtocolError(f"line {number} of the {source.kind} file is not a Batch output line "
                                "with a custom_id")
        yield line, custom_id, start, is_failure(parsed)


def _emit(out: Writer, line: bytes, report: MergeReport, kind: str | None, failed: bool) -> None:
    out.write(line + b"\n")
    report.lines += 1
    report.failures += failed
    if kind == "output":
        report.from_output += 1
    elif kind == "error":
        report.from_errors += 1


def custom_ids_of(path: Path) -> list[str]:
    """The ``custom_id`` of each Batch request line of ``path``, in order (for ``--ordered``)."""
    ids: list[str] = []
    try:
        with Path(path).open("rb") as source:
            for number, raw in enumerate(source, 1):
                if raw.strip():
                    ids.append(_request_id(raw, path, number))
    except OSError as exc:
        raise RequestError(f"cannot read {path}: {exc.strerror}") from None
    return ids


def _request_id(raw: bytes, path: Path, number: int) -> str:
    custom_id = parse_line(raw)[1]
    if custom_id is None:
        raise RequestError(f"{path}:{number}: not a Batch request line with a custom_id")
    return custom_id
