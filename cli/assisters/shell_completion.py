"""The shell completion scripts: click's own, for the program ``assisters``.

Each script is a small shell function that runs ``assisters`` again with
``_ASSISTERS_COMPLETE`` set, so completions follow the installed commands and
the checked-in files in ``completions/`` only change when click's templates do.
Regenerate them with ``assisters completion SHELL > completions/assisters.SHELL``.
"""

from __future__ import annotations

import click
from click.shell_completion import BashComplete, FishComplete, ShellComplete, ZshComplete

PROG_NAME = "assisters"
COMPLETE_VAR = "_ASSISTERS_COMPLETE"
SHELLS: dict[str, type[ShellComplete]] = {"bash": BashComplete, "zsh": ZshComplete, "fish": FishComplete}


def completion_script(cli: click.Command, shell: str) -> str:
    """The script that ``_ASSISTERS_COMPLETE={shell}_source assisters`` prints too."""
    return SHELLS[shell](cli, {}, PROG_NAME, COMPLETE_VAR).source()
