"""``assisters completion SHELL``: the shell completion script, click's own.

Each script is a small shell function that runs ``assisters`` again with
``_ASSISTERS_COMPLETE`` set, so completions follow the installed commands and
the checked-in files in ``completions/`` only change when click's templates do.
Regenerate them with ``assisters completion SHELL > completions/assisters.SHELL``.
"""

from __future__ import annotations

import click

from assisters.commands.main import COMPLETE_VAR
from assisters.commands.options import CONTEXT_SETTINGS

PROG_NAME = "assisters"


@click.command(context_settings=CONTEXT_SETTINGS)
@click.pass_context
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]), metavar="SHELL")
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    The script runs assisters again to find the completions, so it stays right
    when commands change. The same scripts are in completions/ in the source tree.

    \b
    Examples:
      source <(assisters completion bash)       # bash, e.g. in ~/.bashrc
      assisters completion zsh > ~/.zfunc/_assisters       # zsh: a directory in $fpath
      assisters completion fish > ~/.config/fish/completions/assisters.fish
    """
    click.echo(completion_script(ctx.find_root().command, shell).encode("utf-8"), nl=False)


def completion_script(cli: click.Command, shell: str) -> str:
    """The script that ``_ASSISTERS_COMPLETE={shell}_source assisters`` prints too."""
    from click.shell_completion import BashComplete, FishComplete, ShellComplete, ZshComplete

    shells: dict[str, type[ShellComplete]] = {"bash": BashComplete, "zsh": ZshComplete, "fish": FishComplete}
    return shells[shell](cli, {}, PROG_NAME, COMPLETE_VAR).source()
