"""The command group and ``main``: the one place where an outcome becomes an exit status.

Every failure the core can meet is an :class:`~assisters.errors.AssistersError`
carrying its status; ``main`` turns it (and click's usage errors, Ctrl-C and
a closed stdout) into a single stderr line and the documented status (see
:mod:`assisters.errors` for the table). Before anything else it makes the
standard streams safe (:func:`assisters.stdio.guard`): a closed, full or
non-blocking stdin, stdout or stderr is an outcome, not a traceback, and
stderr never decides the exit status.

Only click and the command modules (which import only click at module level)
are loaded here: ``--version``, ``--help`` and shell completion start fast.
"""

from __future__ import annotations

import os
import sys

import click

from assisters import __version__, stdio
from assisters.commands.options import CONTEXT_SETTINGS

DEBUG_ENV = "ASSISTERS_DEBUG"
COMPLETE_VAR = "_ASSISTERS_COMPLETE"  # shell completion's request (see commands/completion.py)

# Each command's module (under assisters.commands) is loaded when the command is
# used: ``assisters chat`` does not define batch's seven subcommands first, and
# ``--version`` defines none. ``--help`` and completion load them all (for their
# short help).
COMMANDS = ("batch", "chat", "completion", "conversations", "debug", "models", "raw", "replay", "serve")


class LazyGroup(click.Group):
    """The top-level group, its commands loaded on first use (click's documented
    pattern for lazily loaded subcommands)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            name = f"assisters.commands.{cmd_name}"
            __import__(name)  # not importlib.import_module: -X importtime would not see it
            self.add_command(getattr(sys.modules[name], cmd_name))
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="assisters")
def cli() -> None:
    """Stream chat completions from an OpenAI-compatible API to the terminal and to pipelines.

    Assistant text goes to stdout as it arrives; diagnostics go to stderr.
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every outcome into one exit status."""
    stdio.guard()
    if os.environ.get(COMPLETE_VAR):  # shell completion is click's own business
        _complete(argv)
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
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        from assisters.errors import Terminated  # SIGTERM, where a command asked for it

        status = _status("TERMINATED" if isinstance(exc, Terminated) else "INTERRUPTED")
    except BrokenPipeError:
        streams_ok = False
        status = _status("BROKEN_PIPE")
    except Exception as exc:
        from assisters.errors import AssistersError, StatusOnly

        if isinstance(exc, AssistersError):
            if not isinstance(exc, StatusOnly):
                _say(f"assisters: error: {exc.message}")
            status = exc.status
            streams_ok = status != _status("OUTPUT")
        else:
            if os.environ.get(DEBUG_ENV):
                raise
            _say(f"assisters: internal error: {type(exc).__name__}: {exc} "
                 f"(set {DEBUG_ENV}=1 for a traceback)")
            status = _status("INTERNAL")
    _quiet_exit(int(status), streams_ok)


def _complete(argv: list[str] | None) -> None:
    """Shell completion: click's own protocol; an unwritable stdout ends it quietly."""
    from assisters.errors import OutputError

    try:
        cli.main(args=argv, prog_name="assisters", complete_var=COMPLETE_VAR)
    except (OutputError, BrokenPipeError):
        _quiet_exit(_status("OUTPUT"), streams_ok=False)


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
    """The last line of a run. It may quote the server: control characters are made
    visible and secrets scrubbed. A stderr that cannot be written changes nothing."""
    from assisters.visible import visible

    line = visible(line)
    redact = sys.modules.get("assisters.redact")  # loaded once any secret could exist
    if redact is not None:
        line = redact.scrub(line)  # type: ignore[attr-defined]
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _quiet_exit(status: int, streams_ok: bool) -> None:
    """Exit without Python complaining about a closed stdout at shutdown; output held
    back while it could have been the start of a secret goes out first. If that last
    write fails, a run that had succeeded is an output error (74)."""
    from assisters.errors import AssistersError

    try:
        if streams_ok:
            redact = sys.modules.get("assisters.redact")
            if redact is not None:
                redact.release_all()  # type: ignore[attr-defined]
            sys.stdout.flush()
    except AssistersError as exc:  # stdout cannot be written (assisters.stdio.Output)
        streams_ok = False
        if status == 0:
            _say(f"assisters: error: {exc.message}")
            status = exc.status
    except OSError:
        streams_ok = False
    if not streams_ok:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(status)
