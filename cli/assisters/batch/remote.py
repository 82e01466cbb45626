"""The provider's Batch API as commands: ``batch submit``, ``status``, ``results``,
``cancel`` and ``list``, from settings to exit status (what :mod:`~assisters.batch.run`
is to ``batch run``).

``submit``, in the order that makes "nothing sent on a bad file" hold:

1. the whole input is checked (``batch run``'s reader, :mod:`~assisters.batch.input`);
   problems are listed as ``INPUT:LINE: reason`` and nothing is sent (65);
2. the normalised request lines are written to private files, one, or with
   ``--split`` as many as the provider's limits need (:mod:`~assisters.batch.prepare`);
   a file over the limits is refused here, saying how to split it (65);
3. each part is uploaded (``purpose=batch``) and its batch created; the batch id is
   printed on its own line and flushed at once, so ``id=$(assisters batch submit
   in.jsonl)`` works and a script sees every batch that exists even when a later
   part fails. An upload the provider refused to make a batch of is deleted again;
4. ``--wait`` polls until every batch has ended (:mod:`~assisters.batch.waiting`), a
   bar on a terminal only; with ``-o`` the merged results are then written as
   ``results`` writes them. Ctrl-C (or a failure) while waiting leaves the batches
   running and says how to go on: ``assisters batch results ID --wait -o FILE``
   or ``assisters batch status ID``; Ctrl-C exits 130, SIGTERM the same way with 143
   (:func:`~assisters.errors.sigterm_interrupts`; so do Ctrl-C and SIGTERM while
   uploading, naming the batches already created).

Exit statuses, as a script meets them (README's table):

* ``status``: the batch's state (:mod:`~assisters.batch.states`): 0 completed, 75
  still running, 69 expired or cancelled (what ran is downloadable), 65 failed (the
  provider's ``errors`` on stderr); for several ids, the least finished decides;
* ``results`` and ``submit --wait -o``: as ``batch run`` ends: 0 every request
  succeeded, 3 some failed (their lines hold the errors); 69 expired or cancelled
  (the partial results are written), 65 failed (nothing to download), 75 still
  running (nothing written; ``--wait`` waits instead);
* ``submit --wait`` without ``-o``: as ``status`` of the ended batches;
* a missing or expired batch id, or a server without the Batch API: 65
  (:class:`~assisters.batch.provider.NotFound`,
  :class:`~assisters.batch.provider.NoBatchAPI`); an OUTPUT that cannot be written,
  found before anything is sent: 2.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from assisters.batch.input import BatchInput, refuse_problems
from assisters.batch.prepare import RequestPart, upload_name, write_parts
from assisters.batch.progress import wait_bar
from assisters.batch.provider import BatchClient, FileLimits, NoBatchAPI, NotFound, ProviderAPI, check_limits
from assisters.batch.results import custom_ids_of, download_results, not_ready
from assisters.batch.states import combined_state, error_summary, state_of, status_line
from assisters.batch.waiting import PollPolicy, wait_for_batch
from assisters.config import Settings
from assisters.errors import (
    AssistersError,
    ExitStatus,
    HTTPStatusError,
    RequestError,
    StatusOnly,
    Terminated,
    sigterm_interrupts,
)
from assisters.request import ChatOptions
from assisters.runner import fileno, local_server
from assisters.terminal import Streams
from assisters.visible import one_line

Batch = dict[str, Any]


@dataclass(frozen=True)
class SubmitOptions:
    """What ``batch submit`` was asked to do, beyond the settings and the chat defaults."""

    input_path: str | None = None  # None or "-": stdin
    prompts: bool = False
    metadata: tuple[tuple[str, str], ...] = ()
    split: bool = False
    wait: bool = False
    output_path: str | None = None  # with wait: the merged results
    ordered: bool = False
    poll: PollPolicy = field(default_factory=PollPolicy)
    quiet: bool = False


@dataclass(frozen=True)
class ResultsOptions:
    """What ``batch results`` was asked to do."""

    output_path: str | None = None  # None or "-": stdout
    ordered: bool = False
    input_path: str | None = None  # --ordered's order (else the batch's own input file)
    prompts: bool = False
    wait: bool = False
    poll: PollPolicy = field(default_factory=PollPolicy)
    quiet: bool = False


@contextmanager
def provider(settings: Settings, streams: Streams, *, quiet: bool = False) -> Iterator[BatchClient]:
    """A client of the profile's Batch API (the built-in server for ``--base-url local``);
    retry notices on stderr unless ``quiet``."""
    with local_server(settings) as settings, \
            BatchClient(settings, ProviderAPI.from_settings(settings), notify=None if quiet else streams.warn,
                        stdout_fd=fileno(streams.stdout)) as client:
        yield client


# -- submit ------------------------------------------------------------------------------


def submit(settings: Settings, chat: ChatOptions, options: SubmitOptions, streams: Streams) -> None:
    """Check, split, upload, create, print the ids; then wait and write the results if asked.
    SIGTERM ends it as Ctrl-C does (what was created named, the temporary files
    removed), with status 143."""
    with sigterm_interrupts():
        _submit(settings, chat, options, streams)


def _submit(settings: Settings, chat: ChatOptions, options: SubmitOptions, streams: Streams) -> None:
    dest = output_file(options.output_path, options.input_path)
    limits = FileLimits.from_settings(settings)
    api = ProviderAPI.from_settings(settings)
    try:
        scratch = tempfile.TemporaryDirectory(prefix="assisters-submit-")
    except OSError as exc:
        raise RequestError(f"cannot write the request lines to a temporary directory: {exc.strerror}") \
            from None
    try:
        with BatchInput(options.input_path, streams.stdin, prompts=options.prompts, options=chat) as source:
            check = source.check()
            refuse_problems(check, source.name, streams.warn)
            if check.requests == 0:
                raise RequestError(f"{source.name}: the input has no requests; nothing was sent")
            if not options.split:
                check_limits(0, check.requests, limits, source.name)  # before a byte is written
            parts = write_parts(source, api, limits, Path(scratch.name), split=options.split)
            name = source.name
        with provider(settings, streams, quiet=options.quiet) as client:
            batches = _create_all(client, parts, name, options, streams)
            scratch.cleanup()  # hours of waiting need no copy of the requests
            if not options.wait:
                return
            ended = wait_all(client, batches, options.poll, streams, quiet=options.quiet,
                             output=options.output_path)
            if dest is None:
                _end_as_status(ended)
                return
            by_id = {batch["id"]: part for batch, part in zip(batches, parts, strict=True)}

            def order(ready: Sequence[Batch]) -> list[str] | None:
                if not options.ordered:
                    return None
                return [cid for batch in ready for cid in by_id[batch["id"]].custom_ids]

            write_results(client, ended, dest, streams, order)
    finally:
        scratch.cleanup()


def _create_all(client: BatchClient, parts: list[RequestPart], name: str, options: SubmitOptions,
                streams: Streams) -> list[Batch]:
    batches: list[Batch] = []
    for number, part in enumerate(parts, 1):
        try:
            uploaded = client.upload(part.path, upload_name(name, number, len(parts)))
            try:
                batch = client.create(uploaded["id"], metadata=dict(options.metadata) or None)
            except (HTTPStatusError, NotFound, NoBatchAPI) as exc:
                if not isinstance(exc, HTTPStatusError) or exc.http_status < 500:  # surely refused
                    _forget(client, uploaded["id"])
                raise
        except AssistersError as exc:
            if batches:
                exc.message += (f" ({len(batches)} of {len(parts)} batches were created before it: "
                                "their ids are on stdout)")
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (errors.Terminated)
            if batches:
                streams.warn(f"batch: {_how(exc)} while submitting part {number} of {len(parts)}; "
                             f"{resume_hint(batches, options.output_path)}")
            else:
                streams.warn(f"batch: {_how(exc)}; no batch was created")
            raise
        batches.append(batch)
        streams.stdout.write(batch["id"].encode() + b"\n")
        streams.stdout.flush()
    return batches


def _forget(client: BatchClient, file_id: str) -> None:
    """Delete an upload no batch will use (best effort: the refusal is what matters)."""
    with suppress(AssistersError):
        client.delete_file(file_id)


def _end_as_status(batches: Sequence[Batch]) -> None:
    """``submit --wait`` without ``-o``: the exit status of ``status``, with a line when
    the batches did not all complete."""
    state = combined_state(batches)
    if state.exit_status == ExitStatus.OK:
        return
    if state.phase == "failed":
        raise not_ready(next(b for b in batches if state_of(b).phase == "failed"))
    ids = " ".join(one_line(str(b["id"]), 200) for b in batches if state_of(b).name == state.name)
    raise AssistersError(f"batch {ids} ended {one_line(state.name, 40)}; what ran is downloadable: "
                         f"assisters batch results {ids} -o FILE", state.exit_status)


# -- waiting -------------------------------------------------------------------------------


def wait_all(client: BatchClient, batches: Sequence[Batch], poll: PollPolicy, streams: Streams, *,
             quiet: bool, output: str | None) -> list[Batch]:
    """Poll each batch until it has ended (a bar on a terminal); the ended batches.
    Interrupted or failing, the batches stay at the provider, and stderr says how to
    go on waiting."""
    bar = wait_bar(streams, quiet=quiet)
    ended: list[Batch] = []
    try:
        for batch in batches:
            if state_of(batch).ended:
                ended.append(batch)
                continue
            ended.append(wait_for_batch(client, batch["id"], poll=poll, stdout_fd=fileno(streams.stdout),
                                        on_update=bar.update if bar is not None else None))
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (errors.Terminated)
        if bar is not None:
            bar.close()
        streams.warn(f"batch: {_how(exc)}; {resume_hint(batches, output)}")
        raise
    except AssistersError as exc:
        exc.message += f"; {resume_hint(batches, output)}"
        raise
    finally:
        if bar is not None:
            bar.close()
    return ended


def _how(exc: KeyboardInterrupt) -> str:
    return "terminated by SIGTERM" if isinstance(exc, Terminated) else "interrupted"


def resume_hint(batches: Sequence[Batch], output: str | None) -> str:
    ids = " ".join(one_line(str(b["id"]), 200) for b in batches)
    many = len(batches) > 1
    target = output if output not in (None, "-") else "FILE"
    return (f"{'batches' if many else 'batch'} {ids} {'keep' if many else 'keeps'} running at the provider: "
            f"wait again with `assisters batch results {ids} --wait -o {target}`, "
            f"or look with `assisters batch status {ids}`")


# -- results -------------------------------------------------------------------------------


def fetch_results(settings: Settings, ids: Sequence[str], options: ResultsOptions, streams: Streams) -> None:
    """``batch results``: one merged file of the batches' results, or a refusal. SIGTERM
    ends it as Ctrl-C does (no half file; while waiting, how to go on), with status 143."""
    with sigterm_interrupts():
        _fetch_results(settings, ids, options, streams)


def _fetch_results(settings: Settings, ids: Sequence[str], options: ResultsOptions, streams: Streams) -> None:
    dest = output_file(options.output_path, options.input_path)
    input_order = _input_order(settings, options, streams) if options.ordered and options.input_path else None
    with provider(settings, streams, quiet=options.quiet) as client:
        batches = [client.retrieve(ident) for ident in ids]
        if options.wait:
            batches = wait_all(client, batches, options.poll, streams, quiet=options.quiet,
                               output=options.output_path)

        def order(ready: Sequence[Batch]) -> list[str] | None:
            if not options.ordered:
                return None
            if input_order is not None:
                return input_order
            return _provider_order(client, ready)

        write_results(client, batches, dest, streams, order)


def write_results(client: BatchClient, batches: Sequence[Batch], dest: Path | None, streams: Streams,
                  order: Callable[[Sequence[Batch]], list[str] | None]) -> None:
    """Download and merge the results of the ended batches into ``dest`` (stdout when
    None), then end as ``batch run`` would (the module docstring's statuses)."""
    for batch in batches:
        if state_of(batch).phase == "running":
            raise not_ready(batch)  # nothing written: the results are not final
    ready = [batch for batch in batches if state_of(batch).has_results]
    failed = [batch for batch in batches if state_of(batch).phase == "failed"]
    if not ready:
        raise not_ready(failed[0])
    report = download_results(client, ready, dest if dest is not None else streams.stdout, order=order(ready))
    streams.stdout.flush()
    where = f" in {dest}" if dest is not None else ""
    if failed:
        error = not_ready(failed[0])
        error.message += f"; the results of the other batches are{where or ' on stdout'}"
        raise error
    early = [batch for batch in ready if state_of(batch).exit_status != ExitStatus.OK]
    if early:
        ids = " ".join(one_line(str(b["id"]), 200) for b in early)
        how = ", ".join(sorted({one_line(state_of(b).name, 40) for b in early}))
        raise AssistersError(f"batch {ids} ended {how} before every request ran: {report.lines} result "
                             f"lines{where}, {report.failures} of them errors", ExitStatus.SERVER)
    if report.failures:
        raise AssistersError(f"{report.failures} of {report.lines} requests failed; their lines{where} "
                             "hold the errors", ExitStatus.PARTIAL)


def _input_order(settings: Settings, options: ResultsOptions, streams: Streams) -> list[str]:
    """The custom_ids of ``--input``, read as ``submit`` read it (any line form)."""
    chat = ChatOptions(model=settings.model)
    with BatchInput(options.input_path, streams.stdin, prompts=options.prompts, options=chat) as source:
        refuse_problems(source.check(), source.name, streams.warn)
        return [request.custom_id for request in source.requests()]


def _provider_order(client: BatchClient, batches: Sequence[Batch]) -> list[str]:
    """``--ordered`` without ``--input``: the order of each batch's own input file."""
    order: list[str] = []
    with tempfile.TemporaryDirectory(prefix="assisters-order-") as scratch:
        for number, batch in enumerate(batches):
            file_id = batch.get("input_file_id")
            if not isinstance(file_id, str) or not file_id:
                raise RequestError(f"batch {one_line(str(batch['id']), 200)} names no input file; "
                                   "give the input with --input for --ordered")
            path = Path(scratch) / f"input-{number}"
            client.download(file_id, path)
            order += custom_ids_of(path)
    return order


def output_file(path: str | None, input_path: str | None) -> Path | None:
    """OUTPUT, checked before anything is sent (exit 2): a file that can be written
    beside, not a directory, not the input. None for stdout."""
    if path is None or path == "-":
        return None
    dest = Path(path)
    if dest.is_dir():
        raise AssistersError(f"cannot write {path}: it is a directory", ExitStatus.USAGE)
    if input_path not in (None, "-") and dest.exists() and _same_file(dest, Path(str(input_path))):
        raise AssistersError(f"OUTPUT {path} is the INPUT file; write the results elsewhere",
                             ExitStatus.USAGE)
    try:
        with tempfile.NamedTemporaryFile(prefix=f".{dest.name}.", dir=dest.parent):
            pass
    except OSError as exc:
        raise AssistersError(f"cannot write {path}: {exc.strerror or exc}", ExitStatus.USAGE) from None
    return dest


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# -- status, cancel, list ----------------------------------------------------------------------


def show_status(settings: Settings, ids: Sequence[str], streams: Streams, *, as_json: bool) -> None:
    """One line (or the object) per batch on stdout; the provider's reasons for a failed
    one on stderr; the exit status of the least finished."""
    with provider(settings, streams) as client:
        batches = []
        for ident in ids:
            batch = client.retrieve(ident)
            batches.append(batch)
            _print_batch(batch, streams, as_json=as_json)
    for batch in batches:
        if state_of(batch).phase == "failed":
            ident = one_line(str(batch["id"]), 200)
            for reason in error_summary(batch) or ["no reason given"]:
                streams.warn(f"assisters: batch {ident} failed: {reason}")
    state = combined_state(batches)
    if state.exit_status != ExitStatus.OK:
        raise StatusOnly(state.exit_status)


def cancel(settings: Settings, ids: Sequence[str], streams: Streams) -> None:
    """Ask the provider to cancel each batch; its status line (``cancelling``) on stdout."""
    with provider(settings, streams) as client:
        for ident in ids:
            _print_batch(client.cancel(ident), streams, as_json=False)


def list_batches(settings: Settings, limit: int, streams: Streams, *, as_json: bool) -> None:
    """The newest ``limit`` batches, newest first."""
    with provider(settings, streams) as client:
        for batch in client.list(limit):
            _print_batch(batch, streams, as_json=as_json)


def _print_batch(batch: Batch, streams: Streams, *, as_json: bool) -> None:
    line = orjson.dumps(batch) if as_json else status_line(batch).encode()
    streams.stdout.write(line + b"\n")
    streams.stdout.flush()
