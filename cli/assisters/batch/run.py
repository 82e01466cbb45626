"""``batch run`` as a whole: check the input, resume from OUTPUT, run the engine, report.

The order matters for "nothing lost, nothing paid twice":

1. the whole input is checked before anything is sent (``INPUT:LINE: reason``, exit 65);
2. OUTPUT is locked, a torn last line cut away, and its custom_ids indexed; with
   ``--retry-failed`` the failed lines are dropped (an atomic rewrite) so that their
   requests go again; every other custom_id it holds is skipped;
3. the engine sends the rest; each line is appended the moment its request ends;
4. the summary (stderr, ``--summary-json``), and the exit status as an exception for
   ``commands.main``: 0 only when every request sent succeeded, 3 when some failed,
   77 on a refused key, 79 out of quota, 130 Ctrl-C, 143 SIGTERM.

A request that failed because of the account (401/403, ``insufficient_quota``) gets no
line: it is not the request's fault, and the run after the key or the credit is fixed
sends it. OUTPUT on stdout works the same, except that it cannot be resumed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from assisters.batch.input import BatchInput, InputCheck, refuse_problems
from assisters.batch.output import OutputIndex, OutputWriter, ReorderBuffer, drop_lines, scan_output
from assisters.batch.progress import progress_for
from assisters.batch.summary import BatchStats
from assisters.config import Settings
from assisters.errors import AssistersError, ExitStatus
from assisters.redact import scrub_bytes
from assisters.request import ChatOptions
from assisters.terminal import Streams


@dataclass(frozen=True)
class RunOptions:
    """What ``batch run`` was asked to do, beyond the settings and the chat defaults."""

    input_path: str | None = None  # None or "-": stdin
    output_path: str | None = None  # None or "-": stdout (not resumable)
    prompts: bool = False
    concurrency: int = 8
    dry_run: bool = False
    ordered: bool = False
    retry_failed: bool = False
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    summary_json: str | None = None
    progress: bool | None = None  # --progress / --no-progress / neither
    progress_interval: float = 10.0
    quiet: bool = False

    @property
    def output(self) -> str | None:
        return None if self.output_path in (None, "-") else self.output_path

    @property
    def reorder_capacity(self) -> int:
        """--ordered holds at most this many finished lines waiting for an earlier one."""
        return max(256, 8 * self.concurrency)


def run_batch(settings: Settings, chat: ChatOptions, options: RunOptions, streams: Streams) -> None:
    """Run the batch; returns when every request succeeded, else raises the exit status."""
    output = options.output
    source_path = options.input_path
    if output is not None and source_path not in (None, "-") and _same_file(source_path, output):
        raise AssistersError(f"OUTPUT {output} is the INPUT file; write the answers elsewhere",
                             ExitStatus.USAGE)
    with BatchInput(options.input_path, streams.stdin, prompts=options.prompts, options=chat) as source:
        check = source.check()
        refuse_problems(check, source.name, streams.warn)
        if options.dry_run:
            _dry_run(check, output, options, streams)
            return
        stats = BatchStats(requests=check.requests)
        with OutputWriter(output, streams.stdout) as writer:
            done = _resume(output, check, options, streams, writer) if output is not None else set()
            stats.skipped = len(done)
            stats.to_send = check.requests - stats.skipped
            requests = (r for r in source.requests() if r.custom_id not in done)
            _run(settings, options, streams, stats, writer, requests)
    _report(stats, options, streams)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _dry_run(check: InputCheck, output: str | None, options: RunOptions, streams: Streams) -> None:
    line = f"{check.requests} requests, about {check.prompt_tokens} prompt tokens"
    if output is not None:
        index = scan_output(output, repair=False)
        done = _done(index, check, options)
        line += f"; {len(done)} already in {output}, {check.requests - len(done)} to send"
    streams.stdout.write(line.encode() + b"\n")
    streams.stdout.flush()


def _done(index: OutputIndex, check: InputCheck, options: RunOptions) -> set[str]:
    """The custom_ids of this input that OUTPUT settles (a failed one is not, with --retry-failed)."""
    done = index.done - index.failed if options.retry_failed else index.done
    return done & check.custom_ids


def _resume(output: str, check: InputCheck, options: RunOptions, streams: Streams,
            writer: OutputWriter) -> set[str]:
    index = scan_output(output)
    if index.repaired and not options.quiet:
        streams.warn(f"batch: {output}: cut away a torn last line (a run was stopped while writing it); "
                     "its request is sent again")
    if options.retry_failed:
        retry = index.failed & check.custom_ids
        if retry:
            drop_lines(output, retry)
            writer.reopen()
            if not options.quiet:
                streams.warn(f"batch: sending {len(retry)} failed requests again (their lines are replaced)")
    done = _done(index, check, options)
    if not options.quiet:
        if done:
            streams.warn(f"batch: skipping {len(done)} of {check.requests} requests already in {output}")
        foreign = len(index.done - check.custom_ids)
        if foreign:
            streams.warn(f"batch: warning: {output} holds {foreign} lines whose custom_id is not "
                         "in this input")
    return done


def _run(settings: Settings, options: RunOptions, streams: Streams, stats: BatchStats, writer: OutputWriter,
         requests: Any) -> None:
    from assisters.batch.engine import BatchEngine
    from assisters.batch.pacing import Governor
    from assisters.client import make_client
    from assisters.retry import RetryPolicy
    from assisters.runner import local_server

    if stats.to_send == 0:
        return
    progress = progress_for(streams, total=stats.to_send, wanted=options.progress,
                            interval=options.progress_interval, quiet=options.quiet,
                            stdout_output=options.output is None)
    buffer = ReorderBuffer(writer.write, options.reorder_capacity) if options.ordered else None

    def write(order: int, line: dict[str, Any] | None) -> None:
        if buffer is not None:
            buffer.add(order, line)
        elif line is not None:
            writer.write(line)

    governor = Governor(options.concurrency, requests_per_minute=options.requests_per_minute,
                        tokens_per_minute=options.tokens_per_minute)
    try:
        with local_server(settings) as settings, \
                make_client(settings, connections=options.concurrency) as client:
            engine = BatchEngine(settings, client, concurrency=options.concurrency,
                                 policy=RetryPolicy.from_settings(settings), governor=governor, stats=stats,
                                 write=write, notify=progress.notice, tick=lambda: progress.update(stats),
                                 room=(lambda: not buffer.full) if buffer is not None else None)
            engine.run(requests)
    finally:
        if buffer is not None:
            buffer.flush()
        progress.close()


def _report(stats: BatchStats, options: RunOptions, streams: Streams) -> None:
    """The summary, then the outcome as the exit status."""
    error = _outcome(stats, options)
    status = int(error.status) if error is not None else 0
    if stats.stopped == "interrupted":
        status = int(ExitStatus.INTERRUPTED)
    if not options.quiet:
        for line in stats.lines(options.output):
            streams.warn(line)
    if options.summary_json:
        _write_summary(options.summary_json, stats.as_json(options.output, status))
    if stats.stopped == "interrupted":
        raise KeyboardInterrupt
    if error is not None:
        raise error


def _outcome(stats: BatchStats, options: RunOptions) -> AssistersError | None:
    kept = "the completed lines are kept; the same command sends the rest"
    if stats.stopped == "terminated":
        return AssistersError(f"terminated by SIGTERM; {kept}", ExitStatus.TERMINATED)
    if stats.stopped == "auth":
        return AssistersError(f"{stats.stop_message}; {kept}", ExitStatus.AUTH)
    if stats.stopped == "quota":
        return AssistersError(f"{stats.stop_message}; {kept}", ExitStatus.QUOTA)
    if stats.failures:
        where = "their lines hold the errors"
        if options.output:
            where = f"their lines in {options.output} hold the errors; --retry-failed sends them again"
        return AssistersError(f"{stats.failures} of {stats.to_send} requests failed; {where}",
                              ExitStatus.PARTIAL)
    return None


def _write_summary(path: str, summary: dict[str, Any]) -> None:
    import orjson

    try:
        with open(path, "wb") as handle:
            handle.write(scrub_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n"))
    except OSError as exc:
        raise AssistersError(f"cannot write the summary to {path}: {exc.strerror or exc}",
                             ExitStatus.USAGE) from None
