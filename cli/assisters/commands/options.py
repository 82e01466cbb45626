"""The options several commands share, each defined once as a decorator.

Only click is imported here: ``--help``, ``--version`` and shell completion
load this module, and start-up stays fast (see bench/README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
SECONDS = click.FloatRange(min=0, min_open=True)


def connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--base-url, --api-key, --profile and the timeouts, shared by every command."""
    options = [
        click.option("--base-url", metavar="URL",
                     help="API base URL [env ASSISTERS_BASE_URL; default https://api.assisters.dev/v1]."),
        click.option("--api-key", metavar="KEY", help="API key [env ASSISTERS_API_KEY]."),
        click.option("--profile", metavar="NAME", help="Config file profile [env ASSISTERS_PROFILE]."),
        click.option("--connect-timeout", type=SECONDS, metavar="S",
                     help="Longest wait to connect [env ASSISTERS_CONNECT_TIMEOUT; default 10]."),
        click.option("--first-byte-timeout", type=SECONDS, metavar="S",
                     help="Longest wait for the first byte of the answer, while the model thinks "
                          "[env ASSISTERS_FIRST_BYTE_TIMEOUT; default 300]."),
        click.option("--idle-timeout", type=SECONDS, metavar="S",
                     help="Longest silence once the answer is streaming "
                          "[env ASSISTERS_IDLE_TIMEOUT; default 120]."),
        click.option("--timeout", type=SECONDS, hidden=True),  # the idle timeout's older name
        click.option("--total-timeout", type=SECONDS, metavar="S",
                     help="Longest run in all, retries included "
                          "[env ASSISTERS_TOTAL_TIMEOUT; default none]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def chat_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The request options shared by the commands that send a chat prompt."""
    command = connection_options(command)
    command = request_options(command)
    return click.argument("prompt", nargs=-1)(command)


def request_options(command: Callable[..., Any], *, option_flags: tuple[str, ...] = ("-o", "--option"),
                    usage_default: str = "only when -u or --json shows it") -> Callable[..., Any]:
    """The body fields a user sets from the command line (-m, -s, -t, ..., -o KEY VALUE).

    ``batch run`` takes them as defaults for every line, and spells ``-o KEY VALUE``
    ``--option`` only, because its ``-o`` is OUTPUT."""
    options = [
        click.option("-m", "--model", shell_complete=_complete_model,
                     help="Model name [env ASSISTERS_MODEL; default llama-3.1-8b]."),
        click.option("-s", "--system", metavar="TEXT", help="System prompt."),
        click.option("-t", "--temperature", type=float, help="Sampling temperature."),
        click.option("--max-tokens", type=click.IntRange(min=1), help="Most tokens to generate."),
        click.option("--top-p", type=float, help="Nucleus sampling probability mass."),
        click.option("--stop", multiple=True, metavar="TEXT", help="Stop sequence (repeatable)."),
        click.option("--seed", type=int, help="Sampling seed."),
        click.option(*option_flags, "extra", type=(str, str), multiple=True, metavar="KEY VALUE",
                     help="Any extra body field; VALUE is JSON when it parses as JSON, else a string."),
        click.option("--stream-usage/--no-stream-usage", default=None,
                     help="Ask for usage in the stream (stream_options.include_usage) "
                          f"[default: {usage_default}]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _complete_model(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """``--model`` completion from the cache only: no network, and no errors on the
    user's terminal (a broken config file just means no suggestions)."""
    import os

    from click.shell_completion import CompletionItem

    from assisters.model_list import completion_base_url, read_cache

    try:
        base_url = completion_base_url(ctx.params, os.environ)
        ids = read_cache(base_url, os.environ)
    except Exception:  # noqa: BLE001 - completion must never print a traceback into the prompt
        return []
    return [CompletionItem(model) for model in ids if model.startswith(incomplete)]


def save_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--save", metavar="FILE", type=click.Path(dir_okay=False, writable=True),
                        help="Record the exchange as JSON Lines (see README: Recordings).")(command)


def verbose_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-v", "--verbose", is_flag=True,
                        help="Show the request and the response headers on stderr (keys redacted).")(command)



def retry_limit_options(command: Callable[..., Any], *, scope: str = "before any text is shown",
                        ) -> Callable[..., Any]:
    """--max-retries, --max-retry-wait and --max-total-wait."""
    options = [
        click.option("--max-retries", type=click.IntRange(0, 100), metavar="N",
                     help=f"Retries {scope} (connect errors, timeouts, 408, 409, 429, 5xx) "
                          "[env ASSISTERS_MAX_RETRIES; default 2]."),
        click.option("--max-retry-wait", type=SECONDS, metavar="S",
                     help="Longest single wait, ours or the server's Retry-After "
                          "[env ASSISTERS_MAX_RETRY_WAIT; default 60]."),
        click.option("--max-total-wait", type=SECONDS, metavar="S",
                     help="Longest time spent waiting to retry in all [env ASSISTERS_MAX_TOTAL_WAIT; "
                          "default 120]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def retry_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--max-retries, --max-retry-wait, --max-total-wait, --resume, --max-resumes and -q."""
    options = [
        click.option("--resume/--no-resume", default=None,
                     help="When the stream breaks after text was shown, ask the server to continue it "
                          "[env ASSISTERS_RESUME; default off]."),
        click.option("--max-resumes", type=click.IntRange(0, 100), metavar="N",
                     help="Most resumed requests [env ASSISTERS_MAX_RESUMES; default 3]."),
        click.option("-q", "--quiet", is_flag=True, help="No retry or resume notices on stderr."),
    ]
    for option in reversed(options):
        command = option(command)
    return retry_limit_options(command)
