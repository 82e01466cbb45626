"""A conversation in progress: each turn stored, sent through the core, its answer stored.

The order of a turn is what makes a crash cheap: the question is appended to the
store before the request is sent, the answer when it ends (whole, cut by an
error, or interrupted by Ctrl-C), so ``kill -9`` at any moment loses at most the
answer in flight. The request itself is ``chat``'s: :func:`assisters.runner.render_chat`
with its sinks, retries, timeouts, ``--resume``, reasoning on stderr and ``--json``;
the shown text is copied (:class:`Transcript`) to be stored.

Used by ``chat`` (one turn from the arguments and stdin, ``-c``, ``--conversation``)
and by the interactive session (:mod:`assisters.conversation.repl`). Knows
nothing of click or of the terminal's line editor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from assisters.config import Settings
from assisters.conversation.history import History
from assisters.conversation.store import ConversationFile, SpooledText, Store, now
from assisters.errors import AssistersError, Terminated
from assisters.terminal import Streams

if TYPE_CHECKING:  # the HTTP stack loads with the first request, not before the first prompt
    from assisters.stream import ChatResult

_JOIN_EVERY = 256  # pieces of text kept before they are joined: memory stays about the text's size
SPOOL_AFTER = 1 << 16  # characters a one-shot chat holds before its transcript goes to disk


class _Kept:
    """One kind of shown text (the answer, or its reasoning): pieces joined every
    few hundred; with a spool folder, written to a :class:`SpooledText` past
    :data:`SPOOL_AFTER` characters."""

    __slots__ = ("_folder", "_held", "_joined", "_pieces", "_spool")

    def __init__(self, folder: Path | None) -> None:
        self._folder = folder
        self._pieces: list[str] = []
        self._joined: list[str] = []
        self._held = 0  # characters in both lists
        self._spool: SpooledText | None = None

    def add(self, text: str) -> None:
        pieces = self._pieces
        pieces.append(text)
        self._held += len(text)
        # Many small pieces, or a few large ones (a network read can bring 64 KiB).
        if len(pieces) >= _JOIN_EVERY or (self._folder is not None and self._held >= SPOOL_AFTER):
            self._join()

    def _join(self) -> None:
        self._joined.append("".join(self._pieces))
        self._pieces.clear()
        if self._folder is not None and self._held >= SPOOL_AFTER:
            if self._spool is None:
                self._spool = SpooledText(self._folder)
            self._spill(self._spool)

    def _spill(self, spool: SpooledText) -> None:
        for text in self._joined:
            spool.write(text)
        self._joined.clear()
        self._held = 0

    def value(self) -> str | SpooledText:
        """The text, joined (the pieces are let go: one copy of a long answer, not
        two), or the spool with the rest written to it."""
        self._join()
        if self._spool is not None:
            self._spill(self._spool)
            return self._spool
        text = "".join(self._joined)
        self._joined = [text]
        return text


class Transcript:
    """What the sink showed, kept for the store (a ``Tee`` copy: per network read).

    A session that goes on keeps the text in memory: the next request sends it
    back. A one-shot chat only stores it, so with ``spool`` (the conversation's
    folder) a long answer goes to an unnamed file as it arrives and the store
    copies it into the line: a stored one-shot chat's memory stays as flat as a
    ``--no-store`` one's, however long the answer.

    The copy is taken just before the write, so a Ctrl-C between the two can leave
    the last network read's text stored but not shown; never the other way round."""

    def __init__(self, spool: Path | None = None) -> None:
        self._text = _Kept(spool)
        self._reasoning = _Kept(spool)
        # The sink's two methods, bound straight to the keepers: one call per network read.
        self.text = self._text.add
        self.reasoning = self._reasoning.add

    def content(self) -> str | SpooledText:
        return self._text.value()

    def reasoning_content(self) -> str | SpooledText:
        return self._reasoning.value()


_NO_TRANSCRIPT = Transcript()  # shows "": nothing was kept


class Turn:
    """How one request ended: ``result`` when the answer completed; else ``error``
    or ``interrupted`` (``pipe_closed``: stdout's reader left); ``content`` and
    ``reasoning`` are what was shown either way (a string, or the spool of a long
    one-shot answer); ``dropped``, the exchanges --context drop-oldest left out."""

    def __init__(self, transcript: Transcript, result: ChatResult | None = None,
                 error: AssistersError | None = None, interrupted: bool = False,
                 pipe_closed: bool = False, terminated: bool = False) -> None:
        self.content = transcript.content()
        self.reasoning = transcript.reasoning_content()
        self.result = result
        self.error = error
        self.interrupted = interrupted or terminated
        self.terminated = terminated  # SIGTERM (errors.Terminated): interrupted, and the session ends
        self.pipe_closed = pipe_closed
        self.dropped = 0

    @property
    def text(self) -> str:
        """The text shown, when it was kept in memory (a session that goes on)."""
        return self.content if type(self.content) is str else ""

    def raise_failure(self) -> None:
        """For a script: the turn's failure as the exception ``main`` maps to a status."""
        if self.pipe_closed:
            raise BrokenPipeError
        if self.terminated:
            raise Terminated
        if self.interrupted:
            raise KeyboardInterrupt
        if self.error is not None:
            raise self.error


class TurnOptions:
    """The chat options of every turn (the command line's)."""

    def __init__(self, *, as_json: bool = False, show_usage: bool = False, quiet: bool = False,
                 save: str | None = None, interactive: bool = False) -> None:
        self.as_json = as_json
        self.show_usage = show_usage
        self.quiet = quiet
        self.save = save
        self.interactive = interactive


class Totals:
    def __init__(self) -> None:
        self.turns = 0
        self.usage: dict[str, int] = {}

    def add(self, usage: object) -> None:
        self.turns += 1
        if isinstance(usage, dict):
            for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
                value = usage.get(key)
                if isinstance(value, int) and not isinstance(value, bool):
                    self.usage[key] = self.usage.get(key, 0) + value




class Session:
    """One conversation being continued: its file (``None`` with ``--no-store``),
    its history, the model and system prompt of the next turn, and the body
    fields every request shares (``template``: everything but model and messages)."""

    def __init__(self, settings: Settings, streams: Streams, template: dict[str, Any],
                 file: ConversationFile | None, history: History, *, model: str, system: str | None,
                 options: TurnOptions, store: Store | None = None) -> None:
        self.store = store  # where /reset starts a new file; None with --no-store
        self.settings = settings
        self.streams = streams
        self.template = template
        self.file = file
        self.history = history
        self.model = model
        self.system = system or None
        self.options = options
        self.dropped = 0  # --context drop-oldest: exchanges the server would not take last time
        self.last: ChatResult | None = None
        self.totals = Totals()

    @property
    def id(self) -> str | None:
        return self.file.id if self.file is not None else None

    def _record(self, record: dict[str, Any]) -> None:
        """Into the history now; into the store too, unless --no-store."""
        self.history.apply(record)
        if self.file is not None:
            self.file.append(record)

    # -- turns -----------------------------------------------------------------

    def ask(self, text: str) -> Turn:
        """A new question: stored, sent, its answer stored."""
        if self.system != self.history.system:
            self._record({"role": "system", "content": self.system or "", "time": now()})
        self._record({"role": "user", "content": text, "time": now(), "model": self.model})
        return self._answer()

    def retry(self) -> Turn | None:
        """The last question again, its old answer set aside (still in the file)."""
        if not self.history.exchanges:
            return None
        if self.history.exchanges[-1].answer is not None:
            self._record({"event": "retry", "time": now()})
        return self._answer()

    def undo(self) -> bool:
        if not self.history.exchanges:
            return False
        self._record({"event": "undo", "time": now()})
        return True

    def reset(self) -> None:
        """A new conversation with the same model and system prompt."""
        self.file = self.store.new() if self.store is not None else None
        self.history = History()
        self.dropped = 0

    def _answer(self) -> Turn:
        turn = self._send_fitting()
        record: dict[str, Any] = {"role": "assistant", "content": turn.content, "time": now(),
                                  "model": self.model}
        if turn.reasoning:
            record["reasoning_content"] = turn.reasoning
        if turn.result is not None:
            answer = turn.result.answer
            if answer.usage:
                record["usage"] = answer.usage
            record["finish_reason"] = answer.finish_reason
            record["timing"] = _timing(turn.result)
            self.last = turn.result
            self.totals.add(answer.usage)
        if turn.interrupted:
            record["interrupted"] = True
        elif turn.error is not None:
            record["incomplete"] = True
            record["error"] = turn.error.message
        try:
            self._record(record)
        finally:
            for value in (turn.content, turn.reasoning):
                if type(value) is SpooledText:
                    value.close()
        return turn

    def _send_fitting(self) -> Turn:
        """Send; on a context overflow, ``drop-oldest`` drops more of the oldest
        exchanges until the server takes it, ``error`` says so in one line."""
        drop = min(self.dropped, self.history.earlier_answered())
        while True:
            turn = self._send(self.history.messages(drop=drop))
            error = turn.error
            if error is not None:
                from assisters.conversation import context  # only for a failed request
            if error is None or turn.content or not context.is_overflow(error):
                if drop and turn.error is None:
                    self.dropped = turn.dropped = drop
                    self._notice(f"assisters: the {drop} oldest exchange(s) were left out to fit the "
                                 "model's context window (--context drop-oldest)")
                return turn
            droppable = self.history.earlier_answered()
            if not droppable:  # the question alone is too long: the server's words say it all
                return turn
            if self.settings.context != "drop-oldest" or drop >= droppable:
                if self.settings.context == "drop-oldest":
                    error.message = ("even the newest question alone is too long for the model's context "
                                     f"window ({error.message})")
                else:
                    error.message = context.overflow_line(error, self.history.last_prompt_tokens(),
                                                          interactive=self.options.interactive)
                return turn
            sizes = self._exchange_sizes()[drop:]
            drop = min(droppable, drop + context.first_cut(error, sizes))

    def _exchange_sizes(self) -> list[int]:
        """Characters per answered earlier exchange, then what always stays."""
        sizes = [len(m["content"]) for m in self.history.messages()]
        system = sizes.pop(0) if self.history.system else 0
        pairs = [sizes[i] + sizes[i + 1] for i in range(0, len(sizes) - 1, 2)]
        return [*pairs, system + sizes[-1]]

    def _send(self, messages: list[dict[str, str]]) -> Turn:
        from assisters.retry import RetryPolicy
        from assisters.runner import live, render_chat
        from assisters.stream import chat_request

        body = orjson.dumps({**self.template, "model": self.model, "messages": messages})
        settings = self.settings if self.model == self.settings.model else dataclasses.replace(
            self.settings, model=self.model)
        opener = live(settings, chat_request(settings, body), "chat", self.streams, save=self.options.save)
        options = self.options
        # The shown text is kept only where it is used again: stored, or the next turn of
        # a session. A one-shot --no-store chat keeps nothing, so its memory stays flat.
        if options.interactive:
            transcript = Transcript()
        elif self.file is not None:
            transcript = Transcript(spool=self.file.path.parent)
        else:
            transcript = _NO_TRANSCRIPT
        try:
            result = render_chat(opener, self.streams, as_json=options.as_json, show_usage=options.show_usage,
                                 policy=RetryPolicy.from_settings(settings), watch=opener.watch,
                                 request_body=body, quiet=options.quiet,
                                 tee=None if transcript is _NO_TRANSCRIPT else transcript,
                                 json_extra={"conversation": self.id} if self.id else None)
        except AssistersError as exc:
            return Turn(transcript, error=exc)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (errors.Terminated)
            return Turn(transcript, interrupted=True, terminated=isinstance(exc, Terminated))
        except BrokenPipeError:  # stdout's reader left (| head): kept as an interrupted answer
            return Turn(transcript, interrupted=True, pipe_closed=True)
        return Turn(transcript, result=result)

    def _notice(self, line: str) -> None:
        if not self.options.quiet:
            self.streams.warn(line)

    # -- what the slash commands show ------------------------------------------

    def export(self) -> dict[str, Any]:
        """The conversation as a request body ``assisters raw`` takes (``/save``)."""
        return {"model": self.model, "messages": self.history.export()}


def _timing(result: ChatResult) -> dict[str, float]:
    timing = result.timing
    out = {}
    for name, moment in (("first_token_s", timing.first_token), ("total_s", timing.end)):
        value = timing.since_start(moment)
        if value is not None:
            out[name] = round(value, 3)
    return out


def open_session(settings: Settings, streams: Streams, template: dict[str, Any], environ: Mapping[str, str],
                 *,
                 continue_last: bool, conversation_id: str | None, model: str | None, system: str | None,
                 options: TurnOptions) -> Session:
    """The conversation a ``chat`` continues (``-c``, ``--conversation``) or a new one.

    A continued conversation keeps its model and system prompt unless ``-m`` or
    ``-s`` say otherwise. With ``--no-store`` (``store = false``) a continued
    conversation is read but not written, and a new one is never written.
    """
    store = Store.from_environ(environ)
    file: ConversationFile | None = None
    history = History()
    if conversation_id is not None or continue_last:
        file = store.find(conversation_id) if conversation_id is not None else store.latest()
        loaded = file.load()
        if loaded.damaged:
            streams.warn(f"warning: {loaded.damaged} damaged line(s) in conversation {file.id} were skipped")
        history = History.from_records(loaded.records)
    elif settings.store:
        file = store.new()
    if not settings.store:
        file, store = None, None  # type: ignore[assignment]
    return Session(settings, streams, template, file, history, model=model or history.model or settings.model,
                   system=system if system is not None else history.system, options=options,
                   store=store)
