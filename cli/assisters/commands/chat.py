"""``assisters chat``: send a prompt, stream the answer to stdout."""

from __future__ import annotations

from typing import Any

import click

from assisters.commands.inputs import prepare_chat
from assisters.commands.options import CONTEXT_SETTINGS, chat_options, retry_options, save_option


@click.command(context_settings=CONTEXT_SETTINGS)
@chat_options
@click.option("--no-stream", is_flag=True, help="Ask for the whole answer at once (batch scripts).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one chat.completion JSON object (text, finish_reason, usage, tool calls, "
                   "reasoning) instead of the text.")
@click.option("-u", "--usage", "show_usage", is_flag=True,
              help="At the end, print tokens, time to first token and speed on stderr.")
@retry_options
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
