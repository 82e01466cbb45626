"""The interactive session in a real pseudo-terminal against the local server:
typing, paste, Ctrl-C at every moment, slash commands, history, Ctrl-D."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.conftest import SECRET, cli_command, wait_until
from tests.conversation.terminal import CTRL_C, CTRL_D, ENTER, UP, Terminal

pytestmark = pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")), reason="needs a Unix pty")


def stored() -> list[dict[str, Any]]:
    folder = Path(os.environ["XDG_DATA_HOME"]) / "assisters" / "conversations"
    files = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    return [json.loads(line) for line in files[-1].read_text().splitlines()] if files else []


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer(ServeOptions(tokens_per_second=100)) as srv:
        yield srv


@pytest.fixture
def session(server: ChatServer) -> Iterator[Callable[..., Terminal]]:
    """Start ``assisters chat ARGS`` on a terminal; closed (killed if need be) after the test."""
    started: list[Terminal] = []

    def start(*args: str, stdin_pipe: bytes | None = None, **env: str) -> Terminal:
        full_env = {**os.environ, "ASSISTERS_BASE_URL": server.base_url, "ASSISTERS_API_KEY": SECRET,
                    "TERM": "xterm", **env}
        terminal = Terminal(cli_command("chat", *args), full_env, stdin_pipe=stdin_pipe)
        started.append(terminal)
        terminal.wait_prompt()
        return terminal

    yield start
    for terminal in started:
        terminal.close()


def send(terminal: Terminal, text: str) -> None:
    """Type a message at an empty prompt, as a person would, and press Enter."""
    terminal.wait_prompt()
    terminal.type(text)
    terminal.send(ENTER)


def test_typing_sends_the_message_and_the_answer_streams_then_ctrl_d_exits_0(session, server):
    terminal = session("-m", "echo")
    assert "new conversation" in terminal.text and "/help" in terminal.text
    send(terminal, "hello there world")
    at = terminal.wait_for("> hello there world\n")
    terminal.wait_for("hello there world\n", after=at)
    terminal.wait_prompt()
    terminal.wait_prompt()
    terminal.send(CTRL_D)
    assert terminal.wait_exit() == 0
    assert server.requests_seen == 1
    assert [(r["role"], r["content"]) for r in stored()] == [("user", "hello there world"),
                                                              ("assistant", "hello there world")]
    assert "Traceback" not in terminal.text


def test_a_multiline_paste_is_one_message_and_so_are_newline_keys_and_fences(session, server):
    terminal = session("-m", "echo")
    terminal.paste("line one\nline two\nline three\n")
    terminal.send(ENTER)
    terminal.wait_for("line three\n", after=terminal.wait_for("line three"))
    terminal.wait_prompt()
    terminal.type("first")
    terminal.send(b"\x1b\r")  # Esc Enter
    terminal.type("second")
    terminal.send(b"\x1b\r")
    terminal.type("third")
    terminal.send(b"\n")  # Ctrl-J sends, like Enter
    terminal.wait_for("third\n", after=terminal.wait_for("third"))
    send(terminal, '"""')
    for line in ("  indented", 'closing"""'):
        terminal.wait_for(". ")  # the continuation prompt
        terminal.type(line)
        terminal.send(ENTER)
    terminal.wait_for("closing\n", after=terminal.wait_for("closing"))
    terminal.wait_prompt()
    terminal.wait_prompt()
    terminal.send(CTRL_D)
    assert terminal.wait_exit() == 0
    assert server.requests_seen == 3
    questions = [r["content"] for r in stored() if r["role"] == "user"]
    assert questions == ["line one\nline two\nline three", "first\nsecond\nthird", "  indented\nclosing"]


def test_ctrl_c_during_an_answer_stops_it_keeps_it_and_the_session_goes_on(session, server):
    terminal = session("-m", "lorem", "--max-tokens", "100000")
    send(terminal, "write a lot")
    terminal.wait_for("Dolor deserunt")
    terminal.interrupt()
    terminal.wait_for("assisters: interrupted; the answer so far is kept")
    terminal.wait_prompt()
    assert wait_until(lambda: server.disconnects == 1 and server.active_streams == 0)
    answer = stored()[-1]
    assert answer["role"] == "assistant" and answer["interrupted"] is True
    assert answer["content"].startswith("Dolor deserunt")
    # what is stored is what was on screen (Ctrl-C between the copy and the write of the
    # last network read may leave that one token stored but not drawn)
    assert answer["content"][-60:-20] in terminal.text
    send(terminal, "/model echo")
    send(terminal, "still here")
    terminal.wait_for("still here\n", after=terminal.wait_for("> still here"))
    terminal.wait_prompt()
    send(terminal, "/exit")
    assert terminal.wait_exit() == 0
    assert "Traceback" not in terminal.text


def cooked(terminal: Terminal) -> bool:
    """The terminal is as a shell needs it: it echoes, and reads whole lines."""
    import termios

    local_modes = termios.tcgetattr(terminal.controller)[3]
    return bool(local_modes & termios.ECHO) and bool(local_modes & termios.ICANON)


def test_sigterm_at_the_prompt_gives_the_terminal_back_as_it_was_and_exits_143(session):
    terminal = session("-m", "echo")
    assert not cooked(terminal)  # prompt_toolkit reads keys raw
    terminal.process.send_signal(signal.SIGTERM)
    assert terminal.wait_exit() == 143
    assert cooked(terminal)
    assert "Traceback" not in terminal.text


def test_sigterm_during_an_answer_keeps_it_and_ends_the_session(session, server):
    terminal = session("-m", "lorem", "--max-tokens", "100000")
    send(terminal, "write a lot")
    terminal.wait_for("Dolor deserunt")
    terminal.process.send_signal(signal.SIGTERM)
    assert terminal.wait_exit() == 143
    assert "assisters: terminated by SIGTERM; the answer so far is kept" in terminal.text
    assert wait_until(lambda: server.disconnects == 1 and server.active_streams == 0)
    answer = stored()[-1]
    assert answer["role"] == "assistant" and answer["interrupted"] is True
    assert answer["content"].startswith("Dolor deserunt")
    assert cooked(terminal)
    assert "Traceback" not in terminal.text


def test_ctrl_c_at_the_prompt_clears_the_line_and_on_an_empty_one_gives_a_hint(session, server):
    terminal = session("-m", "echo")
    terminal.type("a draft I regret")
    terminal.wait_for("a draft I regret")
    terminal.send(CTRL_C)
    terminal.wait_prompt()
    terminal.send(CTRL_C)
    terminal.wait_for("(Ctrl-D or /exit ends the session)")
    send(terminal, "/model")  # a command, not "a draft I regret/model": the line was cleared
    terminal.wait_for("model: echo")
    terminal.wait_prompt()
    terminal.send(CTRL_D)
    assert terminal.wait_exit() == 0
    assert server.requests_seen == 0


def test_slash_commands(session, server, tmp_path: Path):
    editor = "sh -c 'printf \"from the editor\" > \"$1\"' sh"
    terminal = session("-m", "echo", EDITOR=editor)
    send(terminal, "/help")
    terminal.wait_for("/retry")
    send(terminal, "/nonsense")
    terminal.wait_for("unknown command /nonsense: /help lists the commands")
    send(terminal, "/model")
    terminal.wait_for("model: echo")
    send(terminal, "/system Answer in French.")
    terminal.wait_for("system prompt: Answer in French.")
    send(terminal, "q1")
    terminal.wait_for("q1\n", after=terminal.wait_for("> q1"))
    send(terminal, "q2")
    terminal.wait_for("q2\n", after=terminal.wait_for("> q2"))
    send(terminal, "/undo")
    terminal.wait_for("the last exchange is dropped (1 left)")
    send(terminal, "/retry")
    terminal.wait_for("q1\n", after=terminal.wait_for("> /retry"))
    send(terminal, "/usage")
    terminal.wait_for("conversation size:")
    saved = tmp_path / "saved.json"
    send(terminal, f"/save {saved}")
    terminal.wait_for("saved 3 messages")
    send(terminal, "/edit")
    terminal.wait_for("from the editor\n", after=terminal.wait_for("> /edit"))
    send(terminal, "//slash at the start")
    terminal.wait_for("/slash at the start\n", after=terminal.wait_for("> //slash"))
    send(terminal, "/reset")
    terminal.wait_for("new conversation 2")
    terminal.wait_prompt()
    send(terminal, "/exit")
    assert terminal.wait_exit() == 0
    assert server.requests_seen == 5  # q1, q2, retry, edit, //: no command was sent as a message
    assert json.loads(saved.read_text()) == {"model": "echo", "messages": [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "q1"}, {"role": "assistant", "content": "q1"}]}


def test_history_is_recalled_in_a_new_session_and_holds_no_key(session, server):
    first = session("-m", "echo")
    send(first, f"remember me {SECRET}")
    first.wait_prompt()
    first.wait_for("[REDACTED]")
    first.wait_prompt()
    first.send(CTRL_D)
    assert first.wait_exit() == 0
    history = Path(os.environ["XDG_STATE_HOME"]) / "assisters" / "history"
    assert SECRET.encode() not in history.read_bytes()
    second = session("-m", "echo")
    second.send(UP)
    second.wait_for("> remember me [REDACTED]")
    second.send(ENTER)
    second.wait_for("remember me [REDACTED]\n", after=second.wait_for("> remember me [REDACTED]"))
    second.wait_prompt()
    second.send(CTRL_D)
    assert second.wait_exit() == 0


def test_piped_text_and_arguments_are_the_first_turn_then_the_terminal_is_read(session, server):
    terminal = session("-i", "-m", "echo", "review this", stdin_pipe=b"diff --git a b\n+added\n")
    assert stored()[0]["content"] == "diff --git a b\n+added\n\nreview this"
    assert "review this" in terminal.text
    send(terminal, "and now?")
    terminal.wait_for("and now?\n", after=terminal.wait_for("> and now?"))
    terminal.wait_prompt()
    terminal.send(CTRL_D)
    assert terminal.wait_exit() == 0


def test_a_failed_turn_is_one_line_and_the_session_goes_on(session):
    with ChatServer(ServeOptions(fail_status=503, fail_times=1)) as failing:
        terminal = session("-m", "echo", "--max-retries", "0", ASSISTERS_BASE_URL=failing.base_url)
        send(terminal, "first")
        terminal.wait_for("assisters: error: HTTP 503: Injected failure")
        terminal.wait_prompt()
        send(terminal, "/retry")
        terminal.wait_for("first\n", after=terminal.wait_for("> /retry"))
        terminal.wait_prompt()
        terminal.send(CTRL_D)
        assert terminal.wait_exit() == 0


def test_no_terminal_to_read_is_one_line_and_exit_2(server):
    result = subprocess.run(cli_command("chat", "-i", "hi"), input=b"", capture_output=True,
                            start_new_session=True, timeout=60,  # no controlling terminal: no /dev/tty
                            env={**os.environ, "ASSISTERS_BASE_URL": server.base_url})
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "assisters: error: an interactive session needs a terminal, and there is none to read from "
        "(give the prompt as arguments or on stdin, without -i)\n")
    assert server.requests_seen == 0


def test_ctrl_c_during_start_up_shows_no_traceback(server):
    terminal = Terminal(cli_command("chat", "-m", "echo"), {**os.environ, "TERM": "xterm",
                                                             "ASSISTERS_BASE_URL": server.base_url})
    try:
        time.sleep(0.3)  # somewhere in start-up: imports, settings, the first prompt
        os.killpg(terminal.process.pid, signal.SIGINT)
        hint = "(Ctrl-D or /exit ends the session)"
        assert wait_until(lambda: terminal.process.poll() is not None or hint in terminal.text)
        if terminal.process.poll() is None:  # the prompt was up already: a hint, and it goes on
            terminal.wait_prompt()
            terminal.send(CTRL_D)
            assert terminal.wait_exit() == 0
        else:
            assert terminal.wait_exit() in (130, -signal.SIGINT)
    finally:
        terminal.close()
    assert "Traceback" not in terminal.text
