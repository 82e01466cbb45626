"""``assisters batch``: many chat requests from one JSON Lines file.

``batch run`` sends them from this machine (:mod:`assisters.batch.run`). The
provider's Batch API commands (``submit``, ``status``, ``results``, ``cancel``,
``list``, ``prepare``) join the same group and take the same input options
(:func:`batch_input_options`), so one input file serves both roads.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from assisters.commands.options import (
    CONTEXT_SETTINGS,
    connection_options,
    request_options,
    retry_limit_options,
)

if TYPE_CHECKING:
    from assisters.config import Settings
    from assisters.request import ChatOptions

DEFAULT_CONCURRENCY = 8


@click.group(context_settings=CONTEXT_SETTINGS)
def batch() -> None:
    """Run many chat requests from a JSON Lines file (OpenAI Batch line format).

    \b
    Examples:
      assisters batch run --prompts questions.txt -o answers.jsonl
      assisters batch run requests.jsonl -o answers.jsonl -j 16
    """


def batch_input_options(command: Any) -> Any:
    """INPUT's form and the chat options that fill what a line's body does not set."""
    command = request_options(command, option_flags=("--option",), usage_default="on, for the summary")
    return click.option("--prompts", is_flag=True,
                        help="Each line of INPUT is plain prompt text (blank lines skipped).")(command)


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
    from assisters.commands.inputs import settings_from, warn_insecure
    from assisters.terminal import system_streams

    streams = system_streams(os.environ)
    settings = settings_from(params)
    warn_insecure(settings, streams)
    options = RunOptions(
        input_path=params["input_path"], output_path=params["output_path"], prompts=params["prompts"],
        concurrency=params["concurrency"], dry_run=params["dry_run"], ordered=params["ordered"],
        retry_failed=params["retry_failed"], requests_per_minute=params["max_requests_per_minute"],
        tokens_per_minute=params["max_tokens_per_minute"], summary_json=params["summary_json"],
        progress=params["progress"], progress_interval=params["progress_interval"], quiet=params["quiet"],
    )
    run_batch(settings, chat_defaults(params, settings), options, streams)


def chat_defaults(params: dict[str, Any], settings: Settings) -> ChatOptions:
    """The chat options as the defaults of every line. Requests stream, with usage
    asked for, unless --no-stream or --no-stream-usage (or its setting) says otherwise."""
    from assisters.commands.inputs import chat_options_from

    stream = not params.get("no_stream")
    return chat_options_from(params, settings, stream=stream, stream_usage=settings.stream_usage is not False,
                             option_hint="'--option'")
