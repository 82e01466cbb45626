"""``assisters models``: the server's models, one id per line."""

from __future__ import annotations

import os
from typing import Any

import click

from assisters.commands.inputs import settings_from, warn_insecure
from assisters.commands.options import CONTEXT_SETTINGS, connection_options


@click.command(context_settings=CONTEXT_SETTINGS)
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
