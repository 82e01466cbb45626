"""How the answer becomes bytes: assistant text on stdout, everything else on stderr."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from assisters.answer import writable
from assisters.redact import StreamScrubber
from assisters.stream import ChatResult, ChatSink
from assisters.terminal import Spinner, Streams, dim, direct_write, write_rest
from assisters.visible import one_line, visible

if TYPE_CHECKING:
    from assisters.retry import Progress


class _Waiting:
    """Shows the spinner until the first output, when stderr allows it."""

    def __init__(self, streams: Streams) -> None:
        self._spinner = Spinner(streams.stderr).start() if streams.stderr_styled else None

    def over(self) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None


class TextSink:
    """Choice 0's text to stdout as UTF-8, written and flushed per network read.

    Reasoning goes to stderr, dimmed, and only when stderr is a terminal: in a
    pipeline it is not output, and ``--json`` carries it for scripts.
    """

    def __init__(self, streams: Streams) -> None:
        self._streams = streams
        self._out = streams.stdout
        self._direct = direct_write(streams.stdout)
        self._waiting: _Waiting | None = _Waiting(streams)
        self._show_reasoning = streams.stderr_is_tty
        self._reasoning_open = False
        self._reasoning_scrub = StreamScrubber()  # reasoning is server text on stderr
        self._plain = False  # no spinner to stop, no reasoning line to end: just write
        self._last = b""

    def text(self, text: str) -> None:
        if not self._plain:
            self._before_text()
        try:
            data = text.encode()
        except UnicodeEncodeError:  # a lone surrogate
            data = text.encode("utf-8", "replace")
        self._last = data
        direct = self._direct
        if direct is not None:
            written = direct(data)
            if written == len(data):
                return
            write_rest(self._out, data, written)
        else:
            self._out.write(data)
            self._out.flush()

    def _before_text(self) -> None:
        self._out.flush()  # anything written through the buffer goes before direct writes
        if self._waiting is not None:
            self._waiting.over()
            self._waiting = None
        if self._reasoning_open:
            self._end_reasoning("\n\n")
        self._plain = True

    def reasoning(self, text: str) -> None:
        if not self._show_reasoning:
            return
        if self._waiting is not None:
            self._waiting.over()
            self._waiting = None
        text = self._reasoning_scrub.feed(text.encode()).decode("utf-8", "replace")
        self._streams.stderr.write(dim(visible(text), self._streams.stderr_styled))
        self._streams.stderr.flush()
        self._reasoning_open = True
        self._plain = False

    def _end_reasoning(self, end: str) -> None:
        held = visible(self._reasoning_scrub.finish().decode("utf-8", "replace"))
        self._streams.stderr.write(dim(held, self._streams.stderr_styled) + end if held else end)
        self._streams.stderr.flush()
        self._reasoning_open = False

    def notice(self, line: str) -> None:
        """A retry or resume notice: the spinner goes, and on a terminal the line
        does not run on from text already shown (stdout's bytes are unchanged)."""
        if self._waiting is not None:
            self._waiting.over()
            self._waiting = None
        stderr = self._streams.stderr
        if self._reasoning_open:
            self._end_reasoning("\n")
        elif self._streams.stdout_is_tty and self._last and not self._last.endswith(b"\n"):
            stderr.write("\n")
        stderr.write(visible(line) + "\n")
        stderr.flush()
        self._plain = False

    def close(self) -> None:
        """End of output, however it ended: erase the spinner, end the terminal line."""
        if self._waiting is not None:
            self._waiting.over()
            self._waiting = None
        if self._reasoning_open:
            self._end_reasoning("\n")
        release = getattr(self._out, "release", None)
        if release is not None:  # the end of the answer: a tail held back as a possible secret
            release()
        if self._streams.stdout_is_tty and self._last and not self._last.endswith(b"\n"):
            self._out.write(b"\n")
            self._out.flush()


class JsonSink:
    """``--json``: nothing while streaming, one chat.completion object at the end.

    A run that fails or is interrupted after events arrived still gets its object
    (:meth:`write_incomplete`): what was assembled so far, choice 0 holding exactly
    the text ``chat`` would have printed, ``finish_reason`` as the server sent it
    (null for a choice that was cut), and a top-level ``error`` member
    ``{"status": <exit status>, "message": <the error line>}``.
    """

    def __init__(self, streams: Streams) -> None:
        self._streams = streams
        self._waiting = _Waiting(streams)
        self._shown: list[str] = []  # choice 0's text as text mode would have shown it

    def text(self, text: str) -> None:
        self._shown.append(text)

    def reasoning(self, text: str) -> None:
        pass

    def write(self, completion: dict[str, Any]) -> None:
        self._waiting.over()
        self._streams.stdout.write(orjson.dumps(completion) + b"\n")
        self._streams.stdout.flush()

    def write_incomplete(self, progress: Progress, status: int, message: str,
                         extra: Mapping[str, Any] | None = None) -> None:
        """The object so far, marked incomplete; nothing when nothing arrived (a
        refused connection, an HTTP error): the error line says it all then."""
        answer = progress.answer
        if answer is None or not (answer.events or self._shown):
            return
        completion = answer.completion_object()
        choices = completion["choices"]
        if not choices or choices[0]["index"] != 0:
            choices.insert(0, {"index": 0, "message": {"role": "assistant", "content": None},
                               "finish_reason": None})
        choices[0]["message"]["content"] = "".join(self._shown) or None
        completion["usage"] = writable(progress.usage())
        completion.update(extra or {})
        completion["error"] = {"status": status, "message": message}
        self.write(completion)

    def notice(self, line: str) -> None:
        self._waiting.over()
        self._streams.warn(line)

    def close(self) -> None:
        self._waiting.over()


class Tee:
    """Every piece of text and reasoning to ``sink`` and a copy to ``copy``, which
    sees it first (a conversation keeps what was shown, however the answer ends)."""

    def __init__(self, sink: ChatSink, copy: ChatSink) -> None:
        self._sink = sink
        self._copy = copy

    def text(self, text: str) -> None:
        self._copy.text(text)
        self._sink.text(text)

    def reasoning(self, text: str) -> None:
        self._copy.reasoning(text)
        self._sink.reasoning(text)


def usage_line(result: ChatResult) -> str:
    """``-u``: tokens, time to first token and speed, on one stderr line."""
    timing = result.timing
    usage = result.answer.usage if isinstance(result.answer.usage, dict) else {}
    parts = []
    prompt, completion, total = (usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    if isinstance(completion, int):
        parts.append(f"{one_line(str(prompt), 40)} prompt + {completion} completion = "
                     f"{one_line(str(total), 40)} tokens")
    else:
        parts.append("the server sent no usage")
    ttft = timing.since_start(timing.first_token)
    if ttft is not None:
        parts.append(f"first token {ttft:.2f} s")
    total_s = timing.since_start(timing.end)
    if total_s is not None:
        parts.append(f"total {total_s:.2f} s")
    speed = timing.tokens_per_second(completion)
    if speed is not None:
        parts.append(f"{speed:.1f} tokens/s")
    return "usage: " + ", ".join(parts)
