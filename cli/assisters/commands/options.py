"""The options several commands share, each defined once as a decorator, and the
parameter types that decide what an argument may hold.

Only click is imported here: ``--help``, ``--version`` and shell completion
load this module, and start-up stays fast (see bench/README.md).

**Arguments that are not valid UTF-8** (Python hands them over with surrogates)
are treated by kind, each kind one parameter type:

* text sent as text (the prompt, ``-s``, ``--stop``, ``-o`` values): each bad
  byte becomes U+FFFD, as it does on stdin (:class:`Text`);
* names sent as they are (``-m``, ``-o`` keys, ``raw --path``): a usage error
  naming the option, as are control characters and an empty name
  (:class:`Name`); ``raw -X`` and ``-H`` follow HTTP's own rules
  (:class:`Method`, :class:`Header`, :mod:`assisters.http_syntax`);
* file names (``--save``, ``raw FILE``, ``replay FILE``): used with the bytes as
  given, like any Unix tool.

Numbers are checked here too, so that a flag's mistake is a usage error (2)
naming the flag: integers that JSON cannot carry in 64 bits (``--seed``,
``--max-tokens``), ``nan`` and ``inf`` (``-t``, ``--top-p``, the timeouts).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
MAX_SECONDS = 7 * 86400.0  # config.MAX_TIMEOUT (not imported: this module loads click only)
INT64 = (-(2**63), 2**63 - 1)


def repaired(text: str) -> str:
    """``text`` with every byte that was not UTF-8 (a surrogate) as U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        data = text.encode("utf-8", "surrogateescape")  # the argument's own bytes
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogatepass")
    return data.decode("utf-8", "replace")


class Text(click.ParamType):
    """Text sent as text: bytes that are not UTF-8 become U+FFFD, as on stdin."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return repaired(value) if isinstance(value, str) else value


class Name(click.ParamType):
    """A name sent as it is (a model, a body field, a path): it must be valid UTF-8,
    not empty, and free of control characters."""

    name = "name"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        if repaired(value) != value:
            self.fail(f"{repaired(value)!r} holds bytes that are not UTF-8 (shown as U+FFFD)", param, ctx)
        if not value:
            self.fail("it must not be empty", param, ctx)
        if not value.isprintable():
            self.fail(f"{value!r} holds a control character", param, ctx)
        return value


class Method(click.ParamType):
    """An HTTP method: a token (letters, digits, ``!#$%&'*+-.^_`|~``), upper-cased."""

    name = "method"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from assisters.http_syntax import name_problem  # standard library only

        if not isinstance(value, str):
            return value
        problem = name_problem(value)
        if problem:
            self.fail(f"{repaired(value)!r} is not an HTTP method: {problem}", param, ctx)
        return value.upper()


class Header(click.ParamType):
    """``'Name: value'`` as a (name, value) pair, checked as HTTP requires; the
    value is never quoted in an error (it may be a credential)."""

    name = "header"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from assisters.http_syntax import parse_header  # standard library only

        if not isinstance(value, str):
            return value
        try:
            return parse_header(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class FiniteFloat(click.ParamType):
    """A finite number (JSON has no ``nan`` or ``inf``; a timeout of either never
    fires), optionally more than 0 and at most ``high``."""

    name = "float"

    def __init__(self, *, positive: bool = False, high: float | None = None) -> None:
        self.positive = positive
        self.high = high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.positive and number <= 0:
            self.fail(f"{value} is not more than 0", param, ctx)
        if self.high is not None and number > self.high:
            self.fail(f"{value} is more than {self.high:g}", param, ctx)
        return number


class WholeNumber(click.ParamType):
    """An integer from ``low`` (default: the 64-bit minimum) to the 64-bit maximum:
    JSON numbers beyond 64 bits cannot be sent as integers."""

    name = "integer"

    def __init__(self, low: int = INT64[0]) -> None:
        self.low = low

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            number = value
        else:
            try:
                number = int(value)
            except ValueError:
                self.fail(f"{value!r} is not a whole number", param, ctx)
        if number < self.low or number > INT64[1]:
            limit = "a 64-bit integer" if self.low == INT64[0] else f"from {self.low} to {INT64[1]} (64 bits)"
            self.fail(f"{str(value)[:40]} is not {limit}", param, ctx)
        return number


def apply_options(options: list[Callable[[Any], Any]], command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate ``command`` with ``options``, the first listed shown first in ``--help``."""
    for option in reversed(options):
        command = option(command)
    return command


TEXT = Text()
NAME = Name()
SECONDS = FiniteFloat(positive=True, high=MAX_SECONDS)


def connection_options(command: Callable[..., Any], *, streams: bool = True) -> Callable[..., Any]:
    """--base-url, --api-key, --profile and the timeouts, shared by every command.

    ``streams=False`` (the Batch API commands, whose replies are small JSON objects
    and files, not streams) keeps only the connect timeout: the response-head,
    first-byte, idle and total timeouts are the watchdog's, which watches a stream."""
    options = [
        click.option("--base-url", metavar="URL",
                     help="API base URL [env ASSISTERS_BASE_URL; default https://api.assisters.dev/v1]."),
        click.option("--api-key", metavar="KEY", help="API key [env ASSISTERS_API_KEY]."),
        click.option("--profile", metavar="NAME", help="Config file profile [env ASSISTERS_PROFILE]."),
        click.option("--connect-timeout", type=SECONDS, metavar="S",
                     help="Longest wait to connect [env ASSISTERS_CONNECT_TIMEOUT; default 10]."),
    ]
    if streams:
        options += [
            click.option("--response-head-timeout", type=SECONDS, metavar="S",
                         help="Longest wait for the response head of a streamed request "
                              "[env ASSISTERS_RESPONSE_HEAD_TIMEOUT; default 60]."),
            click.option("--first-byte-timeout", type=SECONDS, metavar="S",
                         help="Longest wait for the first byte of the answer, while the model thinks "
                              "[env ASSISTERS_FIRST_BYTE_TIMEOUT; default 300]."),
            click.option("--idle-timeout", type=SECONDS, metavar="S",
                         help="Longest silence once the answer is streaming "
                              "[env ASSISTERS_IDLE_TIMEOUT; default 120]."),
            click.option("--timeout", type=SECONDS, hidden=True),  # the idle timeout's older name
            click.option("--total-timeout", type=SECONDS, metavar="S",
                         help="Longest run in all, retries and a blocked stdout included "
                              "[env ASSISTERS_TOTAL_TIMEOUT; default none]."),
        ]
    return apply_options(options, command)


def chat_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The request options shared by the commands that send a chat prompt."""
    command = connection_options(command)
    command = request_options(command)
    return click.argument("prompt", nargs=-1, type=TEXT)(command)


def request_options(command: Callable[..., Any], *, option_flags: tuple[str, ...] = ("-o", "--option"),
                    usage_default: str | None = "only when -u or --json shows it") -> Callable[..., Any]:
    """The body fields a user sets from the command line (-m, -s, -t, ..., -o KEY VALUE).

    ``batch run`` takes them as defaults for every line, and spells ``-o KEY VALUE``
    ``--option`` only, because its ``-o`` is OUTPUT. ``usage_default=None`` leaves
    out ``--stream-usage`` (the provider's Batch API does not stream)."""
    options = [
        click.option("-m", "--model", type=NAME, shell_complete=_complete_model,
                     help="Model name [env ASSISTERS_MODEL; default llama-3.1-8b]."),
        click.option("-s", "--system", type=TEXT, metavar="TEXT", help="System prompt."),
        click.option("-t", "--temperature", type=FiniteFloat(), metavar="X", help="Sampling temperature."),
        click.option("--max-tokens", type=WholeNumber(1), metavar="N", help="Most tokens to generate."),
        click.option("--top-p", type=FiniteFloat(), metavar="P", help="Nucleus sampling probability mass."),
        click.option("--stop", type=TEXT, multiple=True, metavar="TEXT", help="Stop sequence (repeatable)."),
        click.option("--seed", type=WholeNumber(), metavar="N", help="Sampling seed (a 64-bit integer)."),
        click.option(*option_flags, "extra", type=click.Tuple([NAME, TEXT]), multiple=True,
                     metavar="KEY VALUE",
                     help="Any extra body field; VALUE is JSON when it parses as JSON, else a string."),
    ]
    if usage_default is not None:
        options.append(click.option("--stream-usage/--no-stream-usage", default=None,
                                    help="Ask for usage in the stream (stream_options.include_usage) "
                                         f"[default: {usage_default}]."))
    return apply_options(options, command)


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
                        callback=_not_stdout,
                        help="Record the exchange as JSON Lines (see README: Recordings).")(command)


def _not_stdout(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--save -`` would mix the recording into the answer on stdout: refused."""
    if value == "-":
        raise click.BadParameter("'-' would be stdout, which carries the answer; give a file name",
                                 ctx, param)
    return value


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
    return apply_options(options, command)


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
