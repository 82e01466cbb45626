"""A conversation as the next request sees it, folded from the store's records.

What is sent (the interrupted-answer policy):

* the system prompt in force (the last ``system`` record), first;
* every exchange whose answer has text, the answer **as it was shown**: an answer
  cut by Ctrl-C (``interrupted``) or by a broken stream (``incomplete``) is sent
  as it is, because that is what the user read and replies to, and it keeps the
  roles alternating (some chat templates refuse two user messages in a row);
  ``/undo`` or ``/retry`` remove it;
* an exchange without an answer text (the request failed, Ctrl-C came before
  the first token, the process was killed) is not sent, question included: the
  next question follows the last answered one, so asking again does not send the
  question twice;
* reasoning is stored but never sent back (providers ask clients not to).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class Exchange:
    __slots__ = ("answer", "question")

    def __init__(self, question: dict[str, Any], answer: dict[str, Any] | None = None) -> None:
        self.question = question
        self.answer = answer

    @property
    def answered(self) -> bool:
        return self.answer is not None and bool(self.answer.get("content"))


class History:
    def __init__(self) -> None:
        self.system: str | None = None
        self.exchanges: list[Exchange] = []

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]]) -> History:
        history = cls()
        for record in records:
            history.apply(record)
        return history

    def apply(self, record: dict[str, Any]) -> None:
        """One stored record, in file order."""
        role, event = record.get("role"), record.get("event")
        if role == "system":
            self.system = _text(record.get("content")) or None
        elif role == "user":
            self.exchanges.append(Exchange(record))
        elif role == "assistant" and self.exchanges:
            self.exchanges[-1].answer = record
        elif event == "undo" and self.exchanges:
            self.exchanges.pop()
        elif event == "retry" and self.exchanges:
            self.exchanges[-1].answer = None

    @property
    def model(self) -> str | None:
        """The model of the last question, which a continued conversation keeps."""
        for exchange in reversed(self.exchanges):
            model = exchange.question.get("model")
            if isinstance(model, str) and model:
                return model
        return None

    def messages(self, *, drop: int = 0) -> list[dict[str, str]]:
        """The messages to send for the last question (see the module docstring);
        ``drop`` leaves out that many of the oldest answered exchanges."""
        messages = [{"role": "system", "content": self.system}] if self.system else []
        *earlier, last = self.exchanges
        answered = [e for e in earlier if e.answered][drop:]
        for exchange in answered:
            messages.append({"role": "user", "content": _text(exchange.question.get("content"))})
            messages.append({"role": "assistant", "content": _text(exchange.answer.get("content"))})  # type: ignore[union-attr]
        messages.append({"role": "user", "content": _text(last.question.get("content"))})
        return messages

    def earlier_answered(self) -> int:
        """How many answered exchanges come before the last question (what can be dropped)."""
        return sum(e.answered for e in self.exchanges[:-1])

    def export(self) -> list[dict[str, str]]:
        """The conversation as an OpenAI ``messages`` list: what the next request
        would send before its new question (``/save``, ``conversations show --json``)."""
        messages = [{"role": "system", "content": self.system}] if self.system else []
        for exchange in self.exchanges:
            if exchange.answered:
                messages.append({"role": "user", "content": _text(exchange.question.get("content"))})
                messages.append({"role": "assistant", "content": _text(exchange.answer.get("content"))})  # type: ignore[union-attr]
        return messages

    def last_prompt_tokens(self) -> int | None:
        """The server's own count of the conversation's size at its last answer."""
        for exchange in reversed(self.exchanges):
            usage = (exchange.answer or {}).get("usage")
            if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
                return int(usage["prompt_tokens"])
        return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class Summary:
    """One line of ``conversations list``; ``time`` is the last record's."""

    def __init__(self, id: str, time: str, model: str, turns: int, first_words: str) -> None:
        self.id, self.time, self.model, self.turns, self.first_words = id, time, model, turns, first_words


def summarize(conversation_id: str, records: list[dict[str, Any]]) -> Summary:
    history = History.from_records(records)
    first = next((r for r in records if r.get("role") == "user"), {})
    times = [r["time"] for r in records if isinstance(r.get("time"), str)]
    words = " ".join(_text(first.get("content")).split())
    return Summary(
        id=conversation_id,
        time=times[-1] if times else "",
        model=history.model or "",
        turns=len(history.exchanges),
        first_words=words if len(words) <= 60 else words[:57] + "...",
    )
