"""The interactive session at a terminal: prompt_toolkit for the line editor, the turns
through :class:`~assisters.conversation.session.Session`.

Imported only when ``chat`` runs interactively, so one-shot ``chat``, ``--help``
and ``--version`` never load prompt_toolkit.

The terminal: the prompt is read from stdin when it is a terminal, else from
``/dev/tty`` (``git diff | assisters chat -i "review this"``), and drawn on
stderr (``/dev/tty`` when stderr is redirected). Answers stream to stdout
exactly as ``chat`` writes them.

Keys: Enter sends (so does Ctrl-J, which is what an Enter typed ahead during an
answer arrives as); Esc Enter (Alt-Enter) inserts a newline; a
bracketed paste is inserted whole, newlines included, and sent by the next
Enter; a message that starts with ``\"\"\"`` goes on over several lines until one
ends with ``\"\"\"``. Ctrl-C clears the line, or on an empty line says how to
leave; Ctrl-D on an empty line (or ``/exit``) ends the session with status 0.
During an answer Ctrl-C stops it at once (the connection is closed, so the
server stops generating), the text so far stays on screen and in the store
marked ``interrupted``, and the prompt comes back. Up and Down recall earlier
messages, also those of earlier sessions: the input history is kept in
``$XDG_STATE_HOME/assisters/history`` (``~/.local/state/assisters/history``),
scrubbed of secrets like every file we write.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory
from prompt_toolkit.input import create_input
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.output import create_output

from assisters.conversation.session import Session, Turn
from assisters.conversation.slash import EXIT, Editor, dispatch
from assisters.conversation.store import state_dir
from assisters.errors import AssistersError, ExitStatus, Terminated
from assisters.redact import scrub_bytes

PROMPT = "> "
CONTINUATION = ". "
FENCE = '"""'
HISTORY_FILE = "history"
HISTORY_LOAD_LIMIT = 1 << 20  # bytes of the history file read at start: the newest entries


class NoTerminal(AssistersError):
    status = ExitStatus.USAGE


@dataclass
class Terminal:
    """Where the session reads keys and draws the prompt."""

    input: TextIO
    output: TextIO

    def close(self) -> None:
        for stream in (self.input, self.output):
            if stream not in (sys.stdin, sys.stderr):
                stream.close()


def open_terminal(stdin_is_tty: bool, stderr_is_tty: bool) -> Terminal:
    """The terminal to talk to, checked before anything is sent."""
    try:
        source = sys.stdin if stdin_is_tty else open("/dev/tty")  # noqa: SIM115 - closed by Terminal.close
        target = sys.stderr if stderr_is_tty else open("/dev/tty", "w")  # noqa: SIM115
    except OSError:
        raise NoTerminal("an interactive session needs a terminal, and there is none to read from "
                         "(give the prompt as arguments or on stdin, without -i)") from None
    return Terminal(source, target)


class ScrubbedHistory(FileHistory):
    """prompt_toolkit's history file, written through the secret scrubber (mode
    0600), and read from its last megabyte only, so start-up stays fast however
    long it grows."""

    def load_history_strings(self) -> Iterable[str]:
        try:
            with open(self.filename, "rb") as file:
                size = file.seek(0, os.SEEK_END)
                file.seek(max(0, size - HISTORY_LOAD_LIMIT))
                data = file.read()
        except OSError:
            return []
        if size > HISTORY_LOAD_LIMIT:
            data = data[data.find(b"\n#") + 1:] if b"\n#" in data else b""
        entries: list[str] = []
        lines: list[str] = []
        for raw in data.decode("utf-8", "replace").splitlines(keepends=True):
            if raw.startswith("+"):
                lines.append(raw[1:])
            elif lines:
                entries.append("".join(lines)[:-1])
                lines = []
        if lines:
            entries.append("".join(lines)[:-1])
        return reversed(entries)

    def store_string(self, string: str) -> None:
        import datetime

        entry = f"\n# {datetime.datetime.now()}\n" + "".join(f"+{line}\n" for line in string.split("\n"))
        try:
            os.makedirs(os.path.dirname(self.filename), mode=0o700, exist_ok=True)
            fd = os.open(self.filename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, scrub_bytes(entry.encode("utf-8", "replace")))
            finally:
                os.close(fd)
        except OSError:
            pass  # no history is no reason to stop the session


def open_fence(text: str) -> bool:
    """A message begun with \"\"\" that has not been closed yet."""
    stripped = text.strip()
    return stripped.startswith(FENCE) and not (len(stripped) >= 2 * len(FENCE) and stripped.endswith(FENCE))


def message_from(text: str) -> str:
    """What is sent for what was typed: a fenced block without its fences, and
    no leading or trailing blank lines."""
    stripped = text.strip()
    if stripped.startswith(FENCE) and stripped.endswith(FENCE) and len(stripped) >= 2 * len(FENCE):
        stripped = stripped[len(FENCE):-len(FENCE)]
    return stripped.strip("\r\n")


def key_bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("enter")
    def _send(event) -> None:  # type: ignore[no-untyped-def]
        buffer = event.current_buffer
        if open_fence(buffer.text):
            buffer.insert_text("\n")
        else:
            buffer.validate_and_handle()

    # Not Ctrl-J: an Enter typed ahead while an answer streams reaches the next prompt
    # as a line feed (the terminal is in cooked mode then), and must still send.
    bindings.add("c-j")(_send)

    @bindings.add("escape", "enter")
    def _newline(event) -> None:  # type: ignore[no-untyped-def]
        event.current_buffer.insert_text("\n")

    @bindings.add("c-c")
    def _interrupt(event) -> None:  # type: ignore[no-untyped-def]
        buffer = event.current_buffer
        if buffer.text:
            buffer.reset()
        else:
            event.app.exit(exception=KeyboardInterrupt())

    return bindings


class Repl:
    """The loop: read a message or a slash command, run it, until Ctrl-D or /exit."""

    def __init__(self, session: Session, terminal: Terminal, environ: Mapping[str, str]) -> None:
        self.session = session
        self.terminal = terminal
        self.streams = session.streams
        history_path = state_dir(environ) / HISTORY_FILE
        self.prompt = PromptSession(
            history=ScrubbedHistory(str(history_path)),
            input=create_input(terminal.input),
            output=create_output(terminal.output),
            key_bindings=key_bindings(),
            multiline=True,
            prompt_continuation=CONTINUATION,
            enable_open_in_editor=False,
            reserve_space_for_menu=0,  # no completion menu: the prompt stays where the cursor is
        )
        self.editor = Editor(terminal.input, environ)

    def say(self, line: str) -> None:
        self.streams.warn(line)

    def run(self, first: str | None) -> None:
        self._banner()
        if first:
            self._turn(lambda: self.session.ask(first))
        while True:
            try:
                text = self.prompt.prompt(PROMPT)
            except Terminated:  # SIGTERM: prompt_toolkit has put the terminal back as it was
                raise
            except KeyboardInterrupt:
                self.say("(Ctrl-D or /exit ends the session)")
                continue
            except EOFError:
                return
            try:
                if self._handle(text) is EXIT:
                    return
            except Terminated:
                raise
            except KeyboardInterrupt:  # outside an answer (a slash command, the editor)
                self.say("assisters: interrupted")
            except AssistersError as exc:  # the editor failed, the store cannot be written, ...
                self.say(f"assisters: error: {exc.message}")

    def _handle(self, text: str) -> object:
        if text.strip().startswith("/") and not text.strip().startswith("//"):
            action = dispatch(text.strip(), self.session, self)
            if action is EXIT or action is None:
                return action
            if callable(action):
                self._turn(action)
            return None
        message = message_from(text)
        if message.startswith("//"):
            message = message[1:]
        if message.strip():
            self._turn(lambda: self.session.ask(message))
        return None

    def _turn(self, run) -> None:  # type: ignore[no-untyped-def]
        turn: Turn | None = run()
        if turn is None:
            return
        if turn.pipe_closed:
            raise BrokenPipeError
        if not self.streams.stdout_is_tty and turn.text and not turn.text.endswith("\n"):
            self.streams.stdout.write(b"\n")  # answers in a file do not run together
            self.streams.stdout.flush()
        if turn.terminated:
            self.say("assisters: terminated by SIGTERM; the answer so far is kept")
            raise Terminated
        if turn.interrupted:
            self.say("assisters: interrupted; the answer so far is kept")
        elif turn.error is not None:
            self.say(f"assisters: error: {turn.error.message}")

    def _banner(self) -> None:
        session = self.session
        where = "not stored (--no-store)"
        if session.file is not None:
            count = len(session.history.exchanges)
            where = (f"conversation {session.id}, {count} exchange(s) so far" if count
                     else f"new conversation {session.id}")
        self.say(f"assisters chat: {session.model}, {where}. Enter sends, Esc Enter adds a line, "
                 "/help lists the commands, Ctrl-D ends.")


def run_interactive(session: Session, terminal: Terminal, first: str | None,
                    environ: Mapping[str, str]) -> None:
    try:
        Repl(session, terminal, environ).run(first)
    finally:
        terminal.close()
