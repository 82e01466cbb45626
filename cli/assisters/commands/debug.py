"""``assisters debug``: send a prompt, show every SSE event as it arrives."""

from __future__ import annotations

from typing import Any

import click

from assisters.commands.inputs import prepare_chat
from assisters.commands.options import CONTEXT_SETTINGS, chat_options, save_option, verbose_option


@click.command(context_settings=CONTEXT_SETTINGS)
@chat_options
@click.option("--pretty", is_flag=True, help="Human-readable blocks instead of JSON Lines.")
@click.option("--comments", is_flag=True, help="Show comments and keep-alives too.")
@verbose_option
@save_option
def debug(**params: Any) -> None:
    """Send PROMPT and show every SSE event as it arrives.

    stdout gets one JSON object per event (index, ms since the request, event
    type, data; "json": false when the data did not parse); stderr gets a
    summary with timings, usage and anomalies. The prompt rules, the request
    options (-m, -s, -t, --top-p, --seed, --max-tokens, --stop, -o,
    --stream-usage) and the connection options are those of chat; chat's output,
    retry and resume options are not (debug shows what the server did, once).
    The exit status follows the same completion rules.

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
