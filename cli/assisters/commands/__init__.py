"""The click commands: thin wrappers that parse options and call the core.

The HTTP stack is imported inside the commands that use it, so ``--help``,
``--version`` and shell completion start fast.

``main`` is the one place where exceptions become a stderr line and an exit
status (see :mod:`assisters.errors` for the table).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from assisters import __version__

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from assisters.config import Settings
    from assisters.terminal import Streams

# Everything else is imported inside the commands that use it: `--version`,
# `--help` and shell completion load only click (see bench/README.md).

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
SECONDS = click.FloatRange(min=0, min_open=True)
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
    options = [
        click.argument("prompt", nargs=-1),
        click.option("-m", "--model", shell_complete=_complete_model,
                     help="Model name [env ASSISTERS_MODEL; default llama-3.1-8b]."),
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


def _complete_model(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from assisters.model_list import complete_model  # reads the cache only, never the network

    return complete_model(ctx, param, incomplete)


def settings_from(params: dict[str, Any]) -> Settings:
    from assisters.config import Overrides, load_settings

    flags = Overrides(
        base_url=params.get("base_url"),
        model=params.get("model"),
        api_key=params.get("api_key"),
        timeout=params.get("timeout"),
        connect_timeout=params.get("connect_timeout"),
        first_byte_timeout=params.get("first_byte_timeout"),
        idle_timeout=params.get("idle_timeout"),
        total_timeout=params.get("total_timeout"),
        stream_usage=params.get("stream_usage"),
        profile=params.get("profile"),
        max_retries=params.get("max_retries"),
        max_retry_wait=params.get("max_retry_wait"),
        max_total_wait=params.get("max_total_wait"),
        resume=params.get("resume"),
        max_resumes=params.get("max_resumes"),
    )
    return load_settings(flags, os.environ)


def read_prompt(prompt_args: tuple[str, ...], streams: Streams) -> str:
    from assisters.request import compose_prompt

    stdin_text = None
    if not streams.stdin_is_tty:
        stdin_text = streams.stdin.read().decode("utf-8", "replace")
    prompt = compose_prompt(prompt_args, stdin_text)
    if not prompt.strip():
        raise click.UsageError("no prompt: give it as arguments or on stdin")
    return prompt


def chat_body(params: dict[str, Any], settings: Settings, prompt: str, *, stream: bool,
              usage_shown: bool) -> bytes:
    from assisters.request import ChatOptions, build_chat_body, encode_body, parse_option_value

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


def save_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--save", metavar="FILE", type=click.Path(dir_okay=False, writable=True),
                        help="Record the exchange as JSON Lines (see README: Recordings).")(command)


def verbose_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-v", "--verbose", is_flag=True,
                        help="Show the request and the response headers on stderr (keys redacted).")(command)


def prepare_chat(params: dict[str, Any], *, stream: bool = True, usage_shown: bool = True,
                 ) -> tuple[Settings, bytes, Streams]:
    """What chat and debug share: prompt, settings, request body, the http warning."""
    from assisters.terminal import system_streams

    streams = system_streams(os.environ)
    prompt = read_prompt(params["prompt"], streams)
    settings = settings_from(params)
    body = chat_body(params, settings, prompt, stream=stream, usage_shown=usage_shown)
    warn_insecure(settings, streams)
    return settings, body, streams


@cli.command(context_settings=CONTEXT_SETTINGS)
@chat_options
@click.option("--no-stream", is_flag=True, help="Ask for the whole answer at once (batch scripts).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one chat.completion JSON object (text, finish_reason, usage, tool calls, "
                   "reasoning) instead of the text.")
@click.option("-u", "--usage", "show_usage", is_flag=True,
              help="At the end, print tokens, time to first token and speed on stderr.")
@click.option("--max-retries", type=click.IntRange(0, 100), metavar="N",
              help="Retries before any text is shown (connect errors, timeouts, 408, 409, 429, 5xx) "
                   "[env ASSISTERS_MAX_RETRIES; default 2].")
@click.option("--max-retry-wait", type=SECONDS, metavar="S",
              help="Longest single wait, ours or the server's Retry-After [env ASSISTERS_MAX_RETRY_WAIT; "
                   "default 60].")
@click.option("--max-total-wait", type=SECONDS, metavar="S",
              help="Longest time spent waiting to retry in all [env ASSISTERS_MAX_TOTAL_WAIT; default 120].")
@click.option("--resume/--no-resume", default=None,
              help="When the stream breaks after text was shown, ask the server to continue it "
                   "[env ASSISTERS_RESUME; default off].")
@click.option("--max-resumes", type=click.IntRange(0, 100), metavar="N",
              help="Most resumed requests [env ASSISTERS_MAX_RESUMES; default 3].")
@click.option("-q", "--quiet", is_flag=True, help="No retry or resume notices on stderr.")
@save_option
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
      assisters chat --base-url local "no account needed"
    """
    from assisters.retry import RetryPolicy
    from assisters.runner import live, local_server, render_chat
    from assisters.stream import chat_request

    settings, body, streams = prepare_chat(
        params, stream=not params["no_stream"], usage_shown=params["show_usage"] or params["as_json"])
    with local_server(settings) as settings:
        opener = live(settings, chat_request(settings, body), "chat", streams, save=params["save"])
        render_chat(opener, streams, as_json=params["as_json"], show_usage=params["show_usage"],
                    policy=RetryPolicy.from_settings(settings), watch=opener.watch, request_body=body,
                    quiet=params["quiet"])


@cli.command(context_settings=CONTEXT_SETTINGS)
@chat_options
@click.option("--pretty", is_flag=True, help="Human-readable blocks instead of JSON Lines.")
@click.option("--comments", is_flag=True, help="Show comments and keep-alives too.")
@verbose_option
@save_option
def debug(**params: Any) -> None:
    """Send PROMPT and show every SSE event as it arrives.

    stdout gets one JSON object per event (index, ms since the request, event
    type, data; "json": false when the data did not parse); stderr gets a
    summary with timings, usage and anomalies. The prompt rules and options are
    those of chat; the exit status follows the same completion rules.

    \b
    Examples:
      assisters debug "hi" | jq -c '.data.choices[0].delta'
      assisters debug --pretty --comments "hi"
    """
    from assisters.runner import live, local_server, render_debug
    from assisters.stream import chat_request

    settings, body, streams = prepare_chat(params)
    with local_server(settings) as settings:
        request = chat_request(settings, body)
        render_debug(live(settings, request, "debug", streams, save=params["save"],
                          verbose=params["verbose"]),
                     streams, pretty=params["pretty"], comments=params["comments"])


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--path", "api_path", default="/chat/completions", show_default=True,
              help="Path relative to the base URL.")
@click.option("-X", "--method", default="POST", show_default=True, help="HTTP method.")
@click.option("-H", "--header", "headers", multiple=True, metavar="'NAME: VALUE'",
              help="Extra request header (repeatable).")
@click.option("--events", is_flag=True, help="Print each SSE data payload on its own line instead.")
@click.option("--no-validate", is_flag=True, help="Send the body even if it is not valid JSON.")
@verbose_option
@save_option
@connection_options
def raw(**params: Any) -> None:
    """Send a request body as-is and print the response body exactly as received.

    The body comes from FILE, or from stdin when FILE is - or omitted. A GET
    (or HEAD, DELETE) sends no body. A non-2xx response still goes to stdout;
    its status goes to stderr and sets the exit status.

    \b
    Examples:
      echo '{"model":"llama-3.1-8b","messages":[{"role":"user","content":"hi"}],"stream":true}' \\
        | assisters raw --events | jq -r '.choices[0].delta.content // empty'
      assisters raw -X GET --path /models | jq -r '.data[].id'
    """
    from assisters.passthrough import parse_header, raw_request
    from assisters.runner import live, local_server, render_raw
    from assisters.terminal import system_streams

    streams = system_streams(os.environ)
    body = raw_body(params, streams)
    settings = settings_from(params)
    warn_insecure(settings, streams)
    headers = [parse_header(h) for h in params["headers"]]
    with local_server(settings) as settings:
        request = raw_request(params["method"], settings.url(params["api_path"]), headers, body)
        render_raw(live(settings, request, "raw", streams, save=params["save"],
                        verbose=params["verbose"]),
                   streams, events=params["events"])


def raw_body(params: dict[str, Any], streams: Streams) -> bytes | None:
    if params["method"].upper() in ("GET", "HEAD", "DELETE", "OPTIONS") and not params["file"]:
        return None
    source = params["file"] or "-"
    if source == "-":
        if streams.stdin_is_tty:
            raise click.UsageError("no request body: give FILE, or pipe the body to stdin")
        body, name = streams.stdin.read(), "stdin"
    else:
        try:
            with open(source, "rb") as file:
                body, name = file.read(), source
        except OSError as exc:
            from assisters.errors import RequestError

            raise RequestError(f"cannot read {source}: {exc.strerror}") from None
    if not params["no_validate"]:
        from assisters.passthrough import validate_json

        validate_json(body, name)
    return body


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--as", "render_as", type=click.Choice(["chat", "debug", "raw"]), default="chat",
              show_default=True, help="Render the recording as this command would.")
@click.option("--realtime", is_flag=True, help="Keep the recorded timing (default: as fast as possible).")
@click.option("--json", "as_json", is_flag=True, help="With --as chat: one chat.completion object.")
@click.option("--pretty", is_flag=True, help="With --as debug: human-readable blocks.")
@click.option("--comments", is_flag=True, help="With --as debug: show comments too.")
@click.option("--events", is_flag=True, help="With --as raw: one SSE data payload per line.")
def replay(**params: Any) -> None:
    """Render a recording made with --save, offline.

    Replaying a recording of chat reproduces its stdout byte for byte and its
    exit status.

    \b
    Examples:
      assisters chat --save bug.jsonl "hi" && assisters replay bug.jsonl
      assisters replay --as debug bug.jsonl | jq .ms
    """
    from pathlib import Path

    from assisters.runner import render_chat, render_debug, render_raw, replayed
    from assisters.terminal import system_streams

    streams = system_streams(os.environ)
    opener = replayed(Path(params["file"]), realtime=params["realtime"])
    if params["render_as"] == "debug":
        render_debug(opener, streams, pretty=params["pretty"], comments=params["comments"])
    elif params["render_as"] == "raw":
        render_raw(opener, streams, events=params["events"])
    else:
        render_chat(opener, streams, as_json=params["as_json"])


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0 picks a free one).")
@click.option("--tokens-per-second", default=50.0, show_default=True, type=click.FloatRange(min=0),
              help="Pace of the lorem model (0: no pause).")
@click.option("--replay", "replay_file", type=click.Path(exists=True, dir_okay=False),
              help="Answer every chat request with this recording.")
@click.option("--fail-status", type=click.IntRange(400, 599), help="Answer with this HTTP status ...")
@click.option("--fail-times", default=1, show_default=True, type=click.IntRange(min=0),
              help="... for the first K requests (0: always).")
@click.option("--retry-after", type=click.FloatRange(min=0), metavar="S",
              help="Send Retry-After with the failure.")
@click.option("--drop-after", type=click.IntRange(min=0), metavar="N",
              help="Cut the connection after N content chunks ...")
@click.option("--drop-after-bytes", type=click.IntRange(min=0), metavar="B",
              help="... or after exactly B bytes of the SSE body ...")
@click.option("--drop-times", default=1, show_default=True, type=click.IntRange(min=0), metavar="K",
              help="... in the first K streams (0: all).")
@click.option("--reset", is_flag=True, help="Cut with a TCP reset instead of a clean close.")
@click.option("--stall-after", type=click.IntRange(min=0), metavar="N", help="Pause after N chunks ...")
@click.option("--stall-seconds", default=0.0, type=click.FloatRange(min=0), metavar="S",
              help="... for S seconds.")
@click.option("--malformed-at", type=click.IntRange(min=1), metavar="N",
              help="Send content chunk N as invalid JSON.")
@click.option("--first-token-delay-ms", default=0.0, type=click.FloatRange(min=0), metavar="MS",
              help="Pause before the first chunk.")
@click.option("--head-delay", default=0.0, type=click.FloatRange(0, 86400), metavar="S",
              help="Pause before the response head.")
@click.option("--drip-ms", type=click.FloatRange(0, 60000), metavar="MS",
              help="Send the stream one byte per chunk, MS apart.")
@click.option("--echo-prefix", is_flag=True,
              help="Continuing an assistant message: send its text again first.")
@click.option("-v", "--verbose", is_flag=True, help="Log one line per request on stderr.")
def serve(**params: Any) -> None:
    """Run a local OpenAI-compatible server (models: echo, lorem) with fault injection.

    Prints its base URL on stdout, then serves until Ctrl-C (exit 0).

    \b
    Examples:
      assisters serve --port 8000 &
      ASSISTERS_BASE_URL=http://127.0.0.1:8000/v1 assisters chat -m echo "hello"
      assisters serve --port 0 --drop-after 5     # test a client against a cut stream
    """
    import signal
    from pathlib import Path

    from assisters.errors import ConfigError
    from assisters.server import ChatServer, ServeOptions

    replay_file = params.pop("replay_file")
    if replay_file:
        from assisters.recording import load_recording, looks_like_recording

        if looks_like_recording(Path(replay_file).read_bytes()):
            load_recording(Path(replay_file))  # a damaged recording is refused now, not per request
    try:
        options = ServeOptions(replay=Path(replay_file) if replay_file else None, **params)
    except ValueError as exc:  # what click's ranges let through: nan
        raise click.UsageError(str(exc)) from None
    try:
        server = ChatServer(options)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {options.host}:{options.port}: {exc.strerror}") from None
    click.echo(server.base_url)
    signal.signal(signal.SIGTERM, _stop_serving)  # `kill` ends it as cleanly as Ctrl-C
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


def _stop_serving(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--json", "as_json", is_flag=True, help="Print the server's list object as one line of JSON.")
@connection_options
def models(**params: Any) -> None:
    """List the server's models (GET /models), one id per line.

    The ids keep the server's order. Each run also refreshes the cache that
    completing --model reads (one file per base URL in $XDG_CACHE_HOME/assisters,
    default ~/.cache/assisters); completion itself never uses the network.

    \b
    Examples:
      assisters models
      assisters models --json | jq -r '.data[].owned_by'
      assisters models --base-url local
    """
    from assisters.model_list import list_models
    from assisters.terminal import system_streams

    streams = system_streams(os.environ)
    settings = settings_from(params)
    warn_insecure(settings, streams)
    list_models(settings, streams, os.environ, as_json=params["as_json"])


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]), metavar="SHELL")
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    The script runs assisters again to find the completions, so it stays right
    when commands change. The same scripts are in completions/ in the source tree.

    \b
    Examples:
      source <(assisters completion bash)       # bash, e.g. in ~/.bashrc
      assisters completion zsh > ~/.zfunc/_assisters       # zsh: a directory in $fpath
      assisters completion fish > ~/.config/fish/completions/assisters.fish
    """
    from assisters.shell_completion import completion_script

    click.echo(completion_script(cli, shell).encode("utf-8"), nl=False)


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
        status = 0
    except click.exceptions.Exit as exc:
        status = exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # bare `assisters`: the help text
        status = exc.exit_code
    except click.ClickException as exc:
        _say(click_error_line(exc))
        status = exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        status = _status("INTERRUPTED")
    except BrokenPipeError:
        streams_ok = False
        status = _status("BROKEN_PIPE")
    except Exception as exc:
        from assisters.errors import AssistersError

        if isinstance(exc, AssistersError):
            _say(f"assisters: error: {exc.message}")
            status = exc.status
        else:
            if os.environ.get(DEBUG_ENV):
                raise
            _say(f"assisters: internal error: {type(exc).__name__}: {exc} "
                 f"(set {DEBUG_ENV}=1 for a traceback)")
            status = _status("INTERNAL")
    _quiet_exit(int(status), streams_ok)


def _status(name: str) -> int:
    from assisters.errors import ExitStatus

    return int(ExitStatus[name])


def click_error_line(exc: click.ClickException) -> str:
    """A usage error as one line, naming the command and where help is."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return f"assisters: error: {message}"
    return f"{ctx.command_path}: error: {message} (see '{ctx.command_path} --help')"


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
    from assisters.config import insecure_key_warning

    warning = insecure_key_warning(settings)
    if warning:
        streams.warn(warning)

