"""The click commands: thin wrappers that parse options and call the core.

``main`` is the one place where exceptions become a stderr line and an exit
status (see :mod:`assisters.errors` for the table).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from assisters import __version__
from assisters.config import Overrides, Settings, insecure_key_warning, load_settings
from assisters.errors import AssistersError, ExitStatus
from assisters.request import ChatOptions, build_chat_body, compose_prompt, encode_body, parse_option_value
from assisters.runner import run_chat_command
from assisters.terminal import Streams, system_streams

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEBUG_ENV = "ASSISTERS_DEBUG"
COMPLETE_ENV = "_ASSISTERS_COMPLETE"


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="assisters")
def cli() -> None:
    """Stream chat completions from an OpenAI-compatible API to the terminal and to pipelines.

    Assistant text goes to stdout as it arrives; diagnostics go to stderr.
    """


def connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--base-url, --api-key, --profile and the timeouts, shared by every command."""
    options = [
        click.option("--base-url", metavar="URL",
                     help="API base URL [env ASSISTERS_BASE_URL; default https://api.assisters.dev/v1]."),
        click.option("--api-key", metavar="KEY", help="API key [env ASSISTERS_API_KEY]."),
        click.option("--profile", metavar="NAME", help="Config file profile [env ASSISTERS_PROFILE]."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                     help="Longest wait for the next byte from the server [default 300]."),
        click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                     help="Longest wait to connect [default 10]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def chat_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The request options shared by the commands that send a chat prompt."""
    options = [
        click.argument("prompt", nargs=-1),
        click.option("-m", "--model", help="Model name [env ASSISTERS_MODEL; default llama-3.1-8b]."),
        click.option("-s", "--system", metavar="TEXT", help="System prompt."),
        click.option("-t", "--temperature", type=float, help="Sampling temperature."),
        click.option("--max-tokens", type=click.IntRange(min=1), help="Most tokens to generate."),
        click.option("--top-p", type=float, help="Nucleus sampling probability mass."),
        click.option("--stop", multiple=True, metavar="TEXT", help="Stop sequence (repeatable)."),
        click.option("--seed", type=int, help="Sampling seed."),
        click.option("-o", "--option", "extra", type=(str, str), multiple=True, metavar="KEY VALUE",
                     help="Any extra body field; VALUE is JSON when it parses as JSON, else a string."),
        click.option("--stream-usage/--no-stream-usage", default=None,
                     help="Ask for usage in the stream (stream_options.include_usage) "
                          "[default: only when -u or --json shows it]."),
    ]
    command = connection_options(command)
    for option in reversed(options):
        command = option(command)
    return command


def settings_from(params: dict[str, Any], *, need_key: bool = True) -> Settings:
    flags = Overrides(
        base_url=params.get("base_url"),
        model=params.get("model"),
        api_key=params.get("api_key"),
        timeout=params.get("timeout"),
        connect_timeout=params.get("connect_timeout"),
        stream_usage=params.get("stream_usage"),
        profile=params.get("profile"),
    )
    return load_settings(flags, os.environ, need_key=need_key)


def read_prompt(prompt_args: tuple[str, ...], streams: Streams) -> str:
    stdin_text = None
    if not streams.stdin_is_tty:
        stdin_text = streams.stdin.read().decode("utf-8", "replace")
    prompt = compose_prompt(prompt_args, stdin_text)
    if not prompt.strip():
        raise click.UsageError("no prompt: give it as arguments or on stdin")
    return prompt


def chat_body(params: dict[str, Any], settings: Settings, prompt: str, *, stream: bool,
              usage_shown: bool) -> bytes:
    stream_usage = settings.stream_usage if settings.stream_usage is not None else usage_shown
    options = ChatOptions(
        model=settings.model,
        system=params.get("system"),
        temperature=params.get("temperature"),
        max_tokens=params.get("max_tokens"),
        top_p=params.get("top_p"),
        stop=tuple(params.get("stop") or ()),
        seed=params.get("seed"),
        extra={key: parse_option_value(value) for key, value in params.get("extra") or ()},
        stream=stream,
        stream_usage=stream and stream_usage,
    )
    return encode_body(build_chat_body(prompt, options))


@cli.command(context_settings=CONTEXT_SETTINGS)
@chat_options
@click.option("--no-stream", is_flag=True, help="Ask for the whole answer at once (batch scripts).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one chat.completion JSON object (text, finish_reason, usage, tool calls, "
                   "reasoning) instead of the text.")
@click.option("-u", "--usage", "show_usage", is_flag=True,
              help="At the end, print tokens, time to first token and speed on stderr.")
def chat(**params: Any) -> None:
    """Send PROMPT and stream the answer to stdout.

    The prompt is the arguments joined by spaces. When stdin is not a terminal
    it is read too: stdin text comes first, then a blank line, then the
    argument text. No prompt at all is a usage error (exit 2).

    \b
    Examples:
      assisters chat "Write a haiku about pipes"
      git diff | assisters chat "review this change"
      assisters chat --json "hi" | jq -r .usage.total_tokens
    """
    streams = system_streams(os.environ)
    prompt = read_prompt(params["prompt"], streams)
    settings = settings_from(params)
    show = params["show_usage"] or params["as_json"]
    body = chat_body(params, settings, prompt, stream=not params["no_stream"], usage_shown=show)
    warn_insecure(settings, streams)
    run_chat_command(settings, body, streams, as_json=params["as_json"], show_usage=params["show_usage"])


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every outcome into one exit status."""
    if os.environ.get(COMPLETE_ENV):  # shell completion is click's own business
        cli.main(args=argv, prog_name="assisters", complete_var=COMPLETE_ENV)
    streams_ok = True
    try:
        # Not cli.main(): it turns Ctrl-C into "Aborted!" and a broken pipe into exit 1.
        args = sys.argv[1:] if argv is None else argv
        with cli.make_context("assisters", list(args)) as ctx:
            cli.invoke(ctx)
        status = ExitStatus.OK
    except click.exceptions.Exit as exc:
        status = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        status = exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        status = ExitStatus.INTERRUPTED
    except BrokenPipeError:
        streams_ok = False
        status = ExitStatus.BROKEN_PIPE
    except AssistersError as exc:
        _say(f"assisters: error: {exc.message}")
        status = exc.status
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        _say(f"assisters: internal error: {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for a traceback)")
        status = ExitStatus.INTERNAL
    _quiet_exit(int(status), streams_ok)


def _say(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except OSError:
        pass


def _quiet_exit(status: int, streams_ok: bool) -> None:
    """Exit without Python complaining about a closed stdout at shutdown."""
    try:
        if streams_ok:
            sys.stdout.flush()
    except OSError:
        streams_ok = False
    if not streams_ok:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(status)


def warn_insecure(settings: Settings, streams: Streams) -> None:
    warning = insecure_key_warning(settings)
    if warning:
        streams.warn(warning)

