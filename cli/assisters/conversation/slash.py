"""The slash commands of an interactive session.

A line that starts with ``/`` is a command, never a message: an unknown one gets
a hint and nothing is sent (start a message with ``//`` to send it with one
``/``). Each command returns ``None`` (done), :data:`EXIT`, or a function that
runs a turn (``/retry``, ``/edit``), which the session loop runs like a message.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Protocol, TextIO

import orjson

from assisters.conversation.session import Session
from assisters.errors import AssistersError
from assisters.redact import scrub_bytes

EXIT = object()
Action = object  # None, EXIT, or a Callable[[], Turn | None]


class Ui(Protocol):
    editor: Editor

    def say(self, line: str) -> None: ...


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    run: Callable[[Session, str, Ui], Action]


def _help(session: Session, arg: str, ui: Ui) -> Action:
    for command in COMMANDS.values():
        ui.say(f"  {command.usage:<14} {command.help}")
    ui.say('  Enter sends; Esc Enter (Alt-Enter) adds a line; """ starts a block that ends with """;')
    ui.say("  Ctrl-C stops an answer or clears the line; Ctrl-D ends; // sends a message that starts with /")
    return None


def _exit(session: Session, arg: str, ui: Ui) -> Action:
    return EXIT


def _model(session: Session, arg: str, ui: Ui) -> Action:
    if arg:
        session.model = arg
    ui.say(f"model: {session.model}")
    return None


def _system(session: Session, arg: str, ui: Ui) -> Action:
    if arg:
        session.system = None if arg == "-" else arg
    ui.say(f"system prompt: {session.system}" if session.system else "no system prompt")
    return None


def _reset(session: Session, arg: str, ui: Ui) -> Action:
    session.reset()
    ui.say(f"new conversation {session.id}" if session.id else "new conversation (not stored)")
    return None


def _undo(session: Session, arg: str, ui: Ui) -> Action:
    if not session.undo():
        ui.say("nothing to undo")
        return None
    left = len(session.history.exchanges)
    ui.say(f"the last exchange is dropped ({left} left)")
    return None


def _retry(session: Session, arg: str, ui: Ui) -> Action:
    if not session.history.exchanges:
        ui.say("nothing to retry: no question yet")
        return None
    return session.retry


def _save(session: Session, arg: str, ui: Ui) -> Action:
    if not arg:
        ui.say("usage: /save PATH (writes the conversation as an OpenAI messages JSON file)")
        return None
    path = Path(arg).expanduser()
    try:
        path.write_bytes(scrub_bytes(orjson.dumps(session.export(), option=orjson.OPT_INDENT_2) + b"\n"))
    except OSError as exc:
        ui.say(f"assisters: error: cannot write {path}: {exc.strerror}")
        return None
    ui.say(f"saved {len(session.export()['messages'])} messages to {path}")
    return None


def _usage(session: Session, arg: str, ui: Ui) -> Action:
    from assisters.sinks import usage_line  # with the HTTP stack, which an answer has loaded

    if session.last is None:
        ui.say("no answer yet")
        return None
    ui.say("last answer: " + usage_line(session.last))
    totals = session.totals
    usage = totals.usage
    if usage:
        ui.say(f"this session: {totals.turns} answer(s), {usage.get('prompt_tokens', 0)} prompt + "
               f"{usage.get('completion_tokens', 0)} completion = {usage.get('total_tokens', 0)} tokens")
    size = session.history.last_prompt_tokens()
    if size is not None:
        ui.say(f"conversation size: {size} prompt tokens at the last answer (the server's count)")
    return None


def _edit(session: Session, arg: str, ui: Ui) -> Action:
    text = ui.editor.edit(arg)
    if text is None:
        return None
    if not text.strip():
        ui.say("empty message: nothing sent")
        return None
    return lambda: session.ask(text.strip("\n"))


COMMANDS = {c.name: c for c in (
    Command("help", "/help", "this list", _help),
    Command("exit", "/exit", "end the session (also Ctrl-D)", _exit),
    Command("model", "/model [NAME]", "show or change the model of the next turns", _model),
    Command("system", "/system [TEXT]", "show or replace the system prompt (/system - removes it)", _system),
    Command("reset", "/reset", "start a new conversation", _reset),
    Command("undo", "/undo", "drop the last exchange", _undo),
    Command("retry", "/retry", "ask the last question again, for a new answer", _retry),
    Command("save", "/save PATH", "write the conversation as an OpenAI messages JSON file", _save),
    Command("usage", "/usage", "tokens, time to first token and speed: last turn and in all", _usage),
    Command("edit", "/edit [TEXT]", "write the next message in $VISUAL or $EDITOR", _edit),
)}
ALIASES = {"quit": "exit", "q": "exit", "?": "help"}


def dispatch(line: str, session: Session, ui: Ui) -> Action:
    name, _, arg = line[1:].partition(" ")
    name = ALIASES.get(name, name)
    command = COMMANDS.get(name)
    if command is None:
        ui.say(f"unknown command /{name}: /help lists the commands (start a message with // "
               "to send it as text)")
        return None
    return command.run(session, arg.strip(), ui)


class Editor:
    """``/edit``: the message in the user's editor, on the session's terminal."""

    def __init__(self, terminal_input: TextIO, environ: Mapping[str, str]) -> None:
        self._input = terminal_input
        self._command = environ.get("VISUAL") or environ.get("EDITOR") or "vi"

    def edit(self, text: str) -> str | None:
        """The edited text, or None when the editor failed (said on stderr by the caller)."""
        with tempfile.TemporaryDirectory(prefix="assisters-") as folder:
            path = Path(folder) / "message.md"
            path.write_text(text + "\n" if text else "", encoding="utf-8")
            try:
                status = subprocess.call([*shlex.split(self._command), str(path)], stdin=self._input)
            except (OSError, ValueError) as exc:
                raise_editor_error(self._command, str(exc))
            if status != 0:
                raise_editor_error(self._command, f"exit status {status}")
            return path.read_text(encoding="utf-8", errors="replace")


def raise_editor_error(command: str, problem: str) -> NoReturn:
    raise AssistersError(f"the editor ({command}) failed: {problem}; set VISUAL or EDITOR")

