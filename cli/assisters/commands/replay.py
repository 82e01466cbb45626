"""``assisters replay``: render a recording made with ``--save``, offline."""

from __future__ import annotations

import os
from typing import Any

import click

from assisters.commands.options import CONTEXT_SETTINGS


@click.command(context_settings=CONTEXT_SETTINGS)
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
