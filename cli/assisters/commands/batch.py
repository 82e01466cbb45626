"""``assisters batch``: many chat requests from one JSON Lines file.

``batch run`` sends them from this machine (:mod:`assisters.batch.run`). The
provider's Batch API commands (``submit``, ``status``, ``results``, ``cancel``,
``list``: :mod:`assisters.batch.remote`; ``prepare``: :mod:`assisters.batch.prepare`)
join the same group, and ``submit`` and ``prepare`` take the same input options
(:func:`batch_input_options`), so one input file serves both roads.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from assisters.commands.options import (
    CONTEXT_SETTINGS,
    NAME,
    SECONDS,
    connection_options,
    request_options,
    retry_limit_options,
)

if TYPE_CHECKING:
    from assisters.config import Settings
    from assisters.request import ChatOptions
    from assisters.terminal import Streams

DEFAULT_CONCURRENCY = 8
DEFAULT_LIST_LIMIT = 20
METADATA_PAIRS, METADATA_KEY_CHARS, METADATA_VALUE_CHARS = 16, 64, 512  # OpenAI's limits


@click.group(context_settings=CONTEXT_SETTINGS)
def batch() -> None:
    """Run many chat requests from a JSON Lines file (OpenAI Batch line format):
    from this machine (run), or through the provider's Batch API (submit, status,
    results, cancel, list, prepare).

    \b
    Examples:
      assisters batch run --prompts questions.txt -o answers.jsonl
      assisters batch run requests.jsonl -o answers.jsonl -j 16
      id=$(assisters batch submit requests.jsonl)
      assisters batch results "$id" --wait -o answers.jsonl
    """


def batch_input_options(command: Any, *, stream_usage: bool = True) -> Any:
    """INPUT's form and the chat options that fill what a line's body does not set
    (``stream_usage=False``: no ``--stream-usage``, for the Batch API, which does not stream)."""
    command = request_options(command, option_flags=("--option",),
                              usage_default="on, for the summary" if stream_usage else None)
    return click.option("--prompts", is_flag=True,
                        help="Each line of INPUT is plain prompt text (blank lines skipped).")(command)


def batch_api_input_options(command: Any) -> Any:
    return batch_input_options(command, stream_usage=False)


def poll_options(command: Any) -> Any:
    """How often ``--wait`` asks: from --poll-interval, doubling up to --max-poll-interval."""
    command = click.option("--max-poll-interval", type=SECONDS, default=60.0, show_default=True, metavar="S",
                           help="Longest wait between two polls.")(command)
    return click.option("--poll-interval", type=SECONDS, default=2.0, show_default=True, metavar="S",
                        help="First wait between two polls (then doubling, with jitter).")(command)


def batch_ids_argument(command: Any) -> Any:
    return click.argument("batch_ids", metavar="ID...", nargs=-1, required=True, type=NAME)(command)


def api_options(command: Any) -> Any:
    """The connection, and the retries of each request to the Batch API."""
    command = retry_limit_options(command, scope="of each Batch API request")
    return connection_options(command, streams=False)


@batch.command("run", context_settings=CONTEXT_SETTINGS)
@click.argument("input_path", metavar="[INPUT]", required=False,
                type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("-o", "--output", "output_path", metavar="FILE",
              help="Append one OpenAI Batch output line per request here; the same command again resumes "
                   "[default: stdout, which cannot be resumed].")
@click.option("-j", "--concurrency", type=click.IntRange(1, 1024), default=DEFAULT_CONCURRENCY,
              show_default=True, metavar="N", help="Most requests in flight.")
@batch_input_options
@click.option("--no-stream", is_flag=True,
              help="Ask for whole answers (stream: false) for lines whose body does not say.")
@click.option("--dry-run", is_flag=True,
              help="Only check INPUT; print the number of requests and a rough prompt-token estimate.")
@click.option("--ordered", is_flag=True, help="Write OUTPUT in input order (default: as requests finish).")
@click.option("--retry-failed", is_flag=True,
              help="Also send again the requests whose OUTPUT line is an error, replacing those lines.")
@click.option("--max-requests-per-minute", type=click.FloatRange(min=0, min_open=True), metavar="N",
              help="Send at most N requests a minute, evenly spaced.")
@click.option("--max-tokens-per-minute", type=click.FloatRange(min=0, min_open=True), metavar="N",
              help="Send at most N tokens a minute (estimated prompt + max_tokens, as providers count).")
@click.option("--summary-json", metavar="FILE", type=click.Path(dir_okay=False),
              help="Also write the summary to FILE as JSON.")
@click.option("--progress/--no-progress", default=None,
              help="--progress: a plain progress line every --progress-interval seconds when stderr is "
                   "not a terminal; --no-progress: no bar on a terminal [default: a bar on a terminal only].")
@click.option("--progress-interval", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              metavar="S", help="Seconds between plain progress lines.")
@connection_options
@lambda command: retry_limit_options(command, scope="of each request")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress, notices or summary on stderr (errors still show).")
def run(**params: Any) -> None:
    """Send every request of INPUT (a file, or stdin) and write one answer line each.

    Each INPUT line is an OpenAI Batch request line ({"custom_id", "method",
    "url": "/v1/chat/completions", "body"}, or just {"custom_id", "body"}), a
    bare chat body ({"messages": [...]}, custom_id line-N), or with --prompts
    plain prompt text. The chat options (-m, -s, -t, --max-tokens, --top-p,
    --stop, --seed, --option KEY VALUE) fill what a line's body does not set.
    The whole input is checked before the first request.

    Running the same command again with the same -o OUTPUT sends only the
    requests that have no line there yet. OUTPUT on stdout cannot be resumed.

    Exit status: 0 all succeeded, 3 some failed (their lines hold the errors),
    65 bad input (nothing sent), 77 key refused, 79 out of quota, 130 Ctrl-C,
    143 SIGTERM (completed lines are kept: rerun to continue).

    \b
    Examples:
      assisters batch run --prompts questions.txt -o answers.jsonl
      jq -r '.response.body.choices[0].message.content' answers.jsonl
      assisters batch run requests.jsonl -o answers.jsonl -j 32 --max-requests-per-minute 500
      assisters batch run requests.jsonl -o answers.jsonl --retry-failed
    """
    from assisters.batch.run import RunOptions, run_batch

    streams, settings = streams_and_settings(params)
    options = RunOptions(
        input_path=params["input_path"], output_path=params["output_path"], prompts=params["prompts"],
        concurrency=params["concurrency"], dry_run=params["dry_run"], ordered=params["ordered"],
        retry_failed=params["retry_failed"], requests_per_minute=params["max_requests_per_minute"],
        tokens_per_minute=params["max_tokens_per_minute"], summary_json=params["summary_json"],
        progress=params["progress"], progress_interval=params["progress_interval"], quiet=params["quiet"],
    )
    run_batch(settings, chat_defaults(params, settings), options, streams)


def streams_and_settings(params: dict[str, Any]) -> tuple[Streams, Settings]:
    """The process's streams and the settings of a command that sends something (with
    the warning for a key about to cross the network unencrypted)."""
    from assisters.commands.inputs import settings_from, warn_insecure
    from assisters.terminal import system_streams

    streams = system_streams(os.environ)
    settings = settings_from(params)
    warn_insecure(settings, streams)
    return streams, settings


def chat_defaults(params: dict[str, Any], settings: Settings) -> ChatOptions:
    """The chat options as the defaults of every line. Requests stream, with usage
    asked for, unless --no-stream or --no-stream-usage (or its setting) says otherwise."""
    from assisters.commands.inputs import chat_options_from

    stream = not params.get("no_stream")
    return chat_options_from(params, settings, stream=stream, stream_usage=settings.stream_usage is not False,
                             option_hint="'--option'")


def _metadata(ctx: click.Context, param: click.Parameter, values: tuple[str, ...],
              ) -> tuple[tuple[str, str], ...]:
    """``--metadata KEY=VALUE``, checked against OpenAI's limits before anything is sent."""
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value[:80]!r} is not KEY=VALUE", ctx, param)
        if key in pairs:
            raise click.BadParameter(f"the key {key[:80]!r} is given twice", ctx, param)
        if len(key) > METADATA_KEY_CHARS or len(text) > METADATA_VALUE_CHARS:
            raise click.BadParameter(f"a key may have at most {METADATA_KEY_CHARS} characters and a value "
                                     f"{METADATA_VALUE_CHARS}: {value[:80]!r}", ctx, param)
        pairs[key] = text
    if len(pairs) > METADATA_PAIRS:
        raise click.BadParameter(f"at most {METADATA_PAIRS} pairs, not {len(pairs)}", ctx, param)
    return tuple(pairs.items())


def _poll_policy(params: dict[str, Any]) -> Any:
    from assisters.batch.waiting import MIN_POLL, PollPolicy

    first, longest = params["poll_interval"], params["max_poll_interval"]
    if first < MIN_POLL:
        raise click.BadParameter(f"{first:g} is less than {MIN_POLL:g} s", param_hint="'--poll-interval'")
    if first > longest:
        raise click.UsageError(f"--poll-interval ({first:g}) is longer than "
                               f"--max-poll-interval ({longest:g})")
    return PollPolicy(first=first, longest=longest)


@batch.command("submit", context_settings=CONTEXT_SETTINGS)
@click.argument("input_path", metavar="[INPUT]", required=False,
                type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@batch_api_input_options
@click.option("--metadata", metavar="KEY=VALUE", multiple=True, callback=_metadata,
              help="Attach this to the batch (repeatable; at most 16 pairs).")
@click.option("--split", is_flag=True,
              help="When INPUT is over the provider's limits, submit one batch per part (one id a line).")
@click.option("--wait", is_flag=True,
              help="Then wait until the batch has ended (a progress bar on a terminal).")
@click.option("-o", "--output", "output_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="With --wait: then write the results here, one OpenAI Batch output line per request.")
@click.option("--ordered", is_flag=True,
              help="With -o: the results in input order, one line for each request.")
@poll_options
@api_options
@click.option("-q", "--quiet", is_flag=True,
              help="No progress or retry notices on stderr (errors still show).")
def submit(**params: Any) -> None:
    """Send INPUT (a file, or stdin) to the provider's Batch API; print the batch id.

    INPUT is read and checked exactly as by `batch run` (the same line forms and
    chat options as defaults; nothing is sent if any line is wrong), turned into
    OpenAI Batch request lines, checked against the provider's limits (50,000
    requests and 200 MB a file for OpenAI; --split submits one batch per part),
    uploaded (purpose batch), and made a batch (completion window 24h). stdout
    gets the batch id alone, so id=$(assisters batch submit in.jsonl) works.

    --wait polls until the batch ends; with -o it then writes the results as
    `batch results` does. Ctrl-C while waiting leaves the batch running and says
    how to wait again (exit 130).

    Exit status: 0 submitted (with --wait: completed, and with -o every request
    succeeded), 3 some requests failed (-o: their lines hold the errors), 65 bad
    input (nothing sent), a limit, a refused upload, a failed batch or no Batch
    API, 69 expired or cancelled, 130 Ctrl-C.

    \b
    Examples:
      id=$(assisters batch submit requests.jsonl --metadata job=nightly)
      assisters batch submit --prompts questions.txt -m gpt-4o-mini --wait -o answers.jsonl
      assisters batch submit --split big.jsonl > batch-ids.txt
    """
    from assisters.batch.remote import SubmitOptions
    from assisters.batch.remote import submit as submit_batch

    if params["output_path"] is not None and not params["wait"]:
        raise click.UsageError("-o OUTPUT writes the results, which exist once the batch has ended: "
                               "add --wait (or later: assisters batch results ID -o OUTPUT)")
    if params["output_path"] == "-":
        raise click.BadParameter("'-' would be stdout, which carries the batch id; give a file name "
                                 "(or later: assisters batch results ID)", param_hint="'-o' / '--output'")
    if params["ordered"] and params["output_path"] is None:
        raise click.UsageError("--ordered orders the results that -o OUTPUT writes: add -o OUTPUT")
    poll = _poll_policy(params)
    streams, settings = streams_and_settings(params)
    options = SubmitOptions(
        input_path=params["input_path"], prompts=params["prompts"], metadata=params["metadata"],
        split=params["split"], wait=params["wait"], output_path=params["output_path"],
        ordered=params["ordered"], poll=poll, quiet=params["quiet"],
    )
    submit_batch(settings, chat_defaults(params, settings), options, streams)


@batch.command("prepare", context_settings=CONTEXT_SETTINGS)
@click.argument("input_path", metavar="[INPUT]", required=False,
                type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@batch_api_input_options
@click.option("--profile", metavar="NAME", help="Config file profile [env ASSISTERS_PROFILE].")
def prepare(**params: Any) -> None:
    """Print the OpenAI Batch request lines `batch submit` would upload; send nothing.

    INPUT (a file, or stdin) is read and checked as by `batch run` and `batch
    submit`; each request becomes one line in the provider's shape (the profile's
    batch_api, batch_endpoint, batch_line_url), without the streaming fields. For a
    provider's web console, other tools, or splitting by hand. No key is needed.

    Exit status: 0, or 65 for bad input (nothing printed).

    \b
    Examples:
      assisters batch prepare --prompts questions.txt -m gpt-4o-mini > requests.jsonl
      assisters batch prepare big.jsonl | split -l 50000 - part-
    """
    from assisters.batch.prepare import print_lines
    from assisters.commands.inputs import settings_from
    from assisters.terminal import system_streams

    streams = system_streams(os.environ)
    settings = settings_from(params, need_key=False)
    print_lines(settings, chat_defaults(params, settings), params["input_path"], streams,
                prompts=params["prompts"])


@batch.command("status", context_settings=CONTEXT_SETTINGS)
@batch_ids_argument
@click.option("--json", "as_json", is_flag=True, help="Print the batch object (one JSON line each).")
@api_options
def status(**params: Any) -> None:
    """Show each batch: id, state, requests done, created and expiry times.

    Exit status, for a script to branch on: 0 completed, 75 still running
    (validating, in_progress, finalizing, cancelling: ask again later), 69
    expired or cancelled (what ran is downloadable with `batch results`), 65
    failed (the provider's reasons on stderr) or no such batch. For several ids
    the least finished decides.

    \b
    Examples:
      assisters batch status batch_abc123
      until assisters batch status "$id" > /dev/null; [ $? -ne 75 ]; do sleep 60; done
      assisters batch status --json "$id" | jq .request_counts
    """
    from assisters.batch.remote import show_status

    streams, settings = streams_and_settings(params)
    show_status(settings, params["batch_ids"], streams, as_json=params["as_json"])


@batch.command("results", context_settings=CONTEXT_SETTINGS)
@batch_ids_argument
@click.option("-o", "--output", "output_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write the results here, whole or not at all [default: stdout].")
@click.option("--ordered", is_flag=True,
              help="In input order, one line for each request (the order of --input, else of the batch's "
                   "own input file).")
@click.option("--input", "order_input", metavar="INPUT", type=click.Path(exists=True, dir_okay=False,
                                                                         allow_dash=True),
              help="With --ordered: the input that was submitted (any form batch run reads).")
@click.option("--prompts", is_flag=True, help="With --input: each line of INPUT is plain prompt text.")
@click.option("--wait", is_flag=True, help="Wait until the batch has ended first (a bar on a terminal).")
@poll_options
@api_options
@click.option("-q", "--quiet", is_flag=True,
              help="No progress or retry notices on stderr (errors still show).")
def results(**params: Any) -> None:
    """Download a batch's output and error files as one file of OpenAI Batch output
    lines, one per custom_id: the format `batch run` writes.

    A batch still running is refused (exit 75; --wait waits for it instead); a
    failed one has no results (65). An expired or cancelled batch has the results
    of what ran (written, then exit 69). With -o, OUTPUT appears whole or not at
    all; running the command again downloads again.

    Exit status: 0 every request succeeded, 3 some failed (their lines hold the
    errors), 69 expired or cancelled, 65 failed or a missing id, 75 still running.

    \b
    Examples:
      assisters batch results "$id" -o answers.jsonl
      assisters batch results "$id" | jq -r '.response.body.choices[0].message.content'
      assisters batch results "$id" --ordered --input requests.jsonl -o answers.jsonl
    """
    from assisters.batch.remote import ResultsOptions, fetch_results

    if params["order_input"] is not None and not params["ordered"]:
        raise click.UsageError("--input gives the order of --ordered: add --ordered")
    poll = _poll_policy(params)
    streams, settings = streams_and_settings(params)
    options = ResultsOptions(output_path=params["output_path"], ordered=params["ordered"],
                             input_path=params["order_input"], prompts=params["prompts"], wait=params["wait"],
                             poll=poll, quiet=params["quiet"])
    fetch_results(settings, params["batch_ids"], options, streams)


@batch.command("cancel", context_settings=CONTEXT_SETTINGS)
@batch_ids_argument
@api_options
def cancel(**params: Any) -> None:
    """Ask the provider to cancel each batch; print its status line (cancelling).

    What already ran stays downloadable once the batch is cancelled (`batch
    results`). Exit status: 0 asked, 65 a missing id or a batch that has already
    ended.
    """
    from assisters.batch.remote import cancel as cancel_batches

    streams, settings = streams_and_settings(params)
    cancel_batches(settings, params["batch_ids"], streams)


@batch.command("list", context_settings=CONTEXT_SETTINGS)
@click.option("--limit", type=click.IntRange(1, 10_000), default=DEFAULT_LIST_LIMIT, show_default=True,
              metavar="N", help="Show the newest N batches.")
@click.option("--json", "as_json", is_flag=True, help="Print the batch objects (one JSON line each).")
@api_options
def list_command(**params: Any) -> None:
    """List the newest batches, newest first: one status line each.

    \b
    Examples:
      assisters batch list --limit 5
      assisters batch list --json | jq -r 'select(.status == "completed") | .id'
    """
    from assisters.batch.remote import list_batches

    streams, settings = streams_and_settings(params)
    list_batches(settings, params["limit"], streams, as_json=params["as_json"])
