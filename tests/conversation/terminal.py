"""A real pseudo-terminal for the interactive tests: the CLI runs with stdin, stdout
and stderr on a pty, as in a terminal emulator, and the test types into it.

The reader thread answers the cursor position requests prompt_toolkit sends
(a terminal emulator would), and keeps everything the process drew. Waits are
for screen content, with generous deadlines that only guard against a hang.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

CPR_REQUEST = b"\x1b[6n"
PASTE_START, PASTE_END = b"\x1b[200~", b"\x1b[201~"
ENTER, CTRL_C, CTRL_D, UP = b"\r", b"\x03", b"\x04", b"\x1b[A"


def _own_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty (its stdout),
    so Ctrl-C becomes SIGINT and /dev/tty opens, as under a shell."""
    import fcntl
    import termios

    os.setsid()
    fcntl.ioctl(1, termios.TIOCSCTTY, 0)


_CSI = re.compile(r"\x1b\[([0-9;?<=>]*)[ -/]*([@-~])"  # CSI: parameters, final byte
                  r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[=>()][0-9A-Za-z]?|\x1b.")  # OSC, the rest


def render(raw: bytes) -> str:
    """A small terminal emulator: enough of VT100 for what prompt_toolkit and our
    output draw (text, CR, LF, BS, cursor moves, erase), on an endless scrollback."""
    text = raw.decode("utf-8", "replace")
    lines: list[list[str]] = [[]]
    row = col = 0
    position = 0

    def put(char: str) -> None:
        line = lines[row]
        while len(line) < col:
            line.append(" ")
        if col < len(line):
            line[col] = char
        else:
            line.append(char)

    while position < len(text):
        match = _CSI.match(text, position)
        if match:
            position = match.end()
            params, final = match.group(1), match.group(2)
            if final is None or (params or "").startswith("?"):
                continue
            numbers = [int(n) if n.isdigit() else 0 for n in (params or "").split(";")]
            count = max(numbers[0], 1)
            if final == "A":
                row = max(0, row - count)
            elif final == "B":
                row += count
            elif final == "C":
                col += count
            elif final == "D":
                col = max(0, col - count)
            elif final == "G":
                col = count - 1
            elif final == "K" and numbers[0] == 0:
                del lines[row][col:]
            elif final == "J" and numbers[0] == 0:
                del lines[row][col:]
                del lines[row + 1:]
            while len(lines) <= row:
                lines.append([])
            continue
        char = text[position]
        position += 1
        if char == "\r":
            col = 0
        elif char == "\n":
            row += 1
            while len(lines) <= row:
                lines.append([])
        elif char == "\b":
            col = max(0, col - 1)
        elif char >= " " or char == "\t":
            put(char)
            col += 1
    return "\n".join("".join(line).rstrip() for line in lines)


class Terminal:
    def __init__(self, args: Sequence[str], env: dict[str, str], *, columns: int = 200, rows: int = 50,
                 stdin_pipe: bytes | None = None) -> None:
        controller, follower = pty.openpty()
        import fcntl
        import struct
        import termios

        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        stdin = subprocess.PIPE if stdin_pipe is not None else follower
        self.process = subprocess.Popen(list(args), stdin=stdin, stdout=follower, stderr=follower, env=env,
                                        preexec_fn=_own_terminal)
        if stdin_pipe is not None:
            assert self.process.stdin is not None
            self.process.stdin.write(stdin_pipe)
            self.process.stdin.close()
        os.close(follower)
        self.controller = controller
        self.raw = b""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.controller], [], [], 0.5)
            except (OSError, ValueError):
                return
            if not ready:
                if self.process.poll() is not None:
                    return
                continue
            try:
                data = os.read(self.controller, 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.raw += data
            for _ in range(data.count(CPR_REQUEST)):
                self.send(b"\x1b[1;1R")

    @property
    def text(self) -> str:
        """What the screen shows, scrollback included, one line per row."""
        with self._lock:
            raw = self.raw
        return render(raw)

    def send(self, data: bytes) -> None:
        os.write(self.controller, data)

    def type(self, text: str) -> None:
        self.send(text.encode())

    def paste(self, text: str) -> None:
        self.send(PASTE_START + text.encode() + PASTE_END)

    def wait_for(self, needle: str, *, after: int = 0, timeout: float = 60) -> int:
        """Wait until ``needle`` is drawn after position ``after``; returns the position past it."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text
            where = text.find(needle, after)
            if where >= 0:
                return where + len(needle)
            ended = self.process.poll() is not None and not self._reader.is_alive()
            if time.monotonic() > deadline or ended:
                raise AssertionError(f"never drawn: {needle!r}; the screen so far:\n{text[-3000:]}")
            time.sleep(0.02)

    def wait_prompt(self, timeout: float = 60) -> None:
        """Wait until the session waits for input: an empty prompt on the last line."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.text.rstrip().splitlines()
            if lines and lines[-1] == ">":
                return
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError("no empty prompt; the screen so far:\n" + "\n".join(lines[-40:]))
            time.sleep(0.02)

    def count(self, needle: str) -> int:
        return self.text.count(needle)

    def interrupt(self) -> None:
        """Ctrl-C as the terminal sends it: the character; the line discipline makes it SIGINT
        when the program is not reading keys raw."""
        self.send(CTRL_C)

    def wait_exit(self, timeout: float = 60) -> int:
        status = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return status

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self._reader.join(timeout=10)
        os.close(self.controller)
