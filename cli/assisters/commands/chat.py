"""``assisters chat``: send a prompt, stream the answer to stdout."""

from __future__ import annotations

from typing import Any

import click

from assisters.commands.options import CONTEXT_SETTINGS, chat_options, retry_options, save_option


@click.command(context_settings=CONTEXT_SETTINGS)
@chat_options
@click.option("--no-stream", is_flag=True, help="Ask for the whole answer at once (batch scripts).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one chat.completion JSON object (text, finish_reason, usage, tool calls, "
                   "reasoning) instead of the text.")
@click.option("-u", "--usage", "show_usage", is_flag=True,
              help="At the end, print tokens, time to first token and speed on stderr.")
@click.option("-i", "--interactive", is_flag=True,
              help="A conversation at the terminal (the default with no prompt on a terminal); "
                   "a prompt or piped text is its first message.")
@click.option("-c", "--continue", "continue_last", is_flag=True,
              help="Continue the most recent conversation.")
@click.option("--conversation", "conversation_id", metavar="ID", help="Continue conversation ID.")
@click.option("--store/--no-store", default=None,
              help="Keep this chat in the conversation store [env ASSISTERS_STORE; default on].")
@click.option("--context", type=click.Choice(["error", "drop-oldest"]),
              help="A conversation too long for the model: fail with a hint, or leave out the oldest "
                   "exchanges [env ASSISTERS_CONTEXT; default error].")
@retry_options
@save_option
def chat(**params: Any) -> None:
    """Send PROMPT and stream the answer to stdout; with no prompt on a terminal, a conversation.

    The prompt is the arguments joined by spaces. When stdin is not a terminal
    it is read too: stdin text comes first, then a blank line, then the
    argument text. No prompt at all is a usage error (exit 2), unless stdin is
    a terminal: then (or with -i) the chat is interactive (/help lists its
    commands). Every chat is stored as a conversation (see
    `assisters conversations`) unless --no-store.

    \b
    Examples:
      assisters chat "Write a haiku about pipes"
      git diff | assisters chat "review this change"
      echo "and in French?" | assisters chat -c
      assisters chat --json "hi" | jq -r .usage.total_tokens
      assisters chat --base-url local "no account needed"
    """
    from assisters.errors import sigterm_interrupts

    with sigterm_interrupts():  # SIGTERM ends a chat as Ctrl-C does (the answer so far stored), then 143
        _chat(params)


def _chat(params: dict[str, Any]) -> None:
    import os
    from contextlib import nullcontext

    import orjson

    from assisters.commands.inputs import chat_body, read_prompt, settings_from, warn_insecure
    from assisters.config import LOCAL_BASE_URL
    from assisters.conversation.session import TurnOptions, open_session
    from assisters.request import compose_prompt
    from assisters.terminal import system_streams

    streams = system_streams(os.environ)
    interactive = params["interactive"] or (not params["prompt"] and streams.stdin_is_tty)
    continuing = params["continue_last"] or params["conversation_id"] is not None
    terminal = None
    if interactive:
        from assisters.conversation.repl import open_terminal, run_interactive

        terminal = open_terminal(streams.stdin_is_tty, streams.stderr_is_tty)
        piped = None if streams.stdin_is_tty else streams.stdin.read().decode("utf-8", "replace")
        prompt = compose_prompt(params["prompt"], piped)
    else:
        prompt = read_prompt(params["prompt"], streams)
    settings = settings_from(params)
    # A conversation asks for usage in the stream: the server's count is its size.
    usage_shown = interactive or continuing or params["show_usage"] or params["as_json"]
    template = orjson.loads(chat_body(params, settings, "", stream=not params["no_stream"],
                                      usage_shown=usage_shown))
    warn_insecure(settings, streams)
    options = TurnOptions(as_json=params["as_json"], show_usage=params["show_usage"], quiet=params["quiet"],
                          save=params["save"], interactive=interactive)
    if settings.base_url == LOCAL_BASE_URL:
        from assisters.runner import local_server

        serving = local_server(settings)
    else:  # the HTTP stack is loaded by the first request: the first prompt comes sooner
        serving = nullcontext(settings)
    with serving as settings:
        # -o model NAME overrides -m, as -o overrides every field built from other options
        model = template["model"] if any(key == "model" for key, _ in params["extra"]) else params["model"]
        session = open_session(settings, streams, template, os.environ, continue_last=params["continue_last"],
                               conversation_id=params["conversation_id"], model=model,
                               system=params["system"], options=options)
        if terminal is not None:
            run_interactive(session, terminal, prompt, os.environ)
        else:
            session.ask(prompt).raise_failure()
