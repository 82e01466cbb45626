"""``assisters conversations list|show|rm``: the stored conversations."""

from __future__ import annotations

from typing import Any

import click

from assisters.commands.options import CONTEXT_SETTINGS


@click.group(context_settings=CONTEXT_SETTINGS)
def conversations() -> None:
    """The stored conversations ($XDG_DATA_HOME/assisters/conversations/).

    \b
    Examples:
      assisters conversations list
      assisters conversations show --json | assisters raw
      assisters conversations rm 20250102-153045-7f3a
    """


DEFAULT_LIST_LIMIT = 20


@conversations.command("list", context_settings=CONTEXT_SETTINGS)
@click.option("-n", "--limit", type=click.IntRange(0, None), default=DEFAULT_LIST_LIMIT, show_default=True,
              metavar="N", help="Show the N most recent (0: all of them).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON array of {id, time, model, turns, first_words, path}.")
def list_(limit: int, as_json: bool) -> None:
    """The conversations, the most recent first: id, time, model, turns, first words."""
    import os

    from assisters.conversation.listing import list_conversations

    list_conversations(os.environ, as_json=as_json, limit=limit or None)


@conversations.command(context_settings=CONTEXT_SETTINGS)
@click.argument("conversation_id", metavar="[ID]", required=False)
@click.option("--json", "as_json", is_flag=True,
              help="A chat request body {model, messages} (what the next request would send before "
                   "its question), for `assisters raw`.")
def show(conversation_id: str | None, as_json: bool) -> None:
    """The messages of conversation ID (default: the most recent)."""
    import os

    from assisters.conversation.listing import show_conversation

    show_conversation(os.environ, conversation_id, as_json=as_json)


@conversations.command(context_settings=CONTEXT_SETTINGS)
@click.argument("conversation_ids", metavar="ID...", nargs=-1, required=True)
def rm(**params: Any) -> None:
    """Delete conversations (an id, or the start of one that names only one)."""
    import os

    from assisters.conversation.listing import remove_conversations

    remove_conversations(os.environ, params["conversation_ids"])
