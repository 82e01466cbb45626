"""``assisters completion SHELL``: the shell completion script."""

from __future__ import annotations

import click

from assisters.commands.options import CONTEXT_SETTINGS


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
    from assisters.shell_completion import completion_script

    click.echo(completion_script(ctx.find_root().command, shell).encode("utf-8"), nl=False)
