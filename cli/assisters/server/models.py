"""The scripted models, ``echo`` and ``lorem``: the tokens they answer with.

* ``echo`` answers with the last user message, split into word tokens that keep their
  whitespace, so the concatenated deltas reproduce the message byte for byte;
* ``lorem`` writes deterministic lorem-ipsum text (paced by the chat endpoint).

Both continue a final assistant message (a resumed answer) instead of starting over
(see :func:`continued`), and both end before the first of the request's stop
sequences (see :class:`StopAt`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from typing import Any

MODELS = ("echo", "lorem")
LOREM_DEFAULT_TOKENS = 64

_MODELS_CREATED = 1_700_000_000  # fixed, so /v1/models answers are reproducible
_TOKEN_RE = re.compile(r"\s*\S+|\s+")
_LOREM_WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor",
    "incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud",
    "exercitation ullamco laboris nisi aliquip ex ea commodo consequat duis aute irure",
    "in reprehenderit voluptate velit esse cillum fugiat nulla pariatur excepteur sint",
    "occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim id est",
    "laborum",
)
_LOREM_VOCABULARY = tuple(word for line in _LOREM_WORDS for word in line.split())


def echo_tokens(text: str) -> list[str]:
    """Split text into word tokens that carry their leading whitespace.

    ``"hello big world"`` gives ``["hello", " big", " world"]``; trailing whitespace is a
    token of its own. Joining the tokens gives back ``text`` exactly, which is what lets
    tests check that a client reassembles deltas byte for byte.
    """
    return _TOKEN_RE.findall(text)


def lorem_tokens(seed: int = 0, index: int = 0) -> Iterator[str]:
    """Endless lorem-ipsum word tokens, the same for the same (seed, choice index).

    Deterministic so benchmarks and recordings can be compared run to run; the index
    makes the n choices of one request differ, as sampled choices would.
    """
    rng = random.Random(f"lorem:{seed}:{index}")
    prefix = ""
    while True:
        length = rng.randint(6, 14)
        for position in range(length):
            word = rng.choice(_LOREM_VOCABULARY)
            if position == 0:
                word = word.capitalize()
            if position == length - 1:
                word += "."
            elif position > 2 and rng.random() < 0.1:
                word += ","
            yield prefix + word
            prefix = " "



def continued(tokens: Iterator[str], skip: int) -> Iterator[str]:
    """The tokens of a full answer after its first ``skip`` characters (code points).

    This is how a final assistant message (the prefix) is continued: the answer goes on
    after ``len(prefix)`` characters of the full answer. If the prefix ends inside a
    token, the first token sent is the rest of that token. An empty prefix gives the
    whole answer; one at least as long as the answer leaves nothing to send (the
    finish_reason is still the full answer's). The prefix is trusted for its length
    only: if it is not a prefix of the full answer (a client that mangled its text),
    the answer still goes on after that many characters, so prefix + continuation has
    the full answer's length and the mismatch stays visible.
    """
    for token in tokens:
        if skip <= 0:
            yield token
        elif skip < len(token):
            yield token[skip:]
        skip -= len(token)


class StopAt:
    """The tokens up to the first stop sequence, which is not sent (as OpenAI does).

    A stop sequence may span tokens, so text that could be the start of one is held
    back until the next token shows whether it is; the pieces sent may then differ
    from the tokens, as a real server's do. ``hit`` says, once the tokens have been
    used up, whether a stop sequence ended them (finish_reason ``stop``).
    """

    def __init__(self, tokens: Iterator[str], stops: tuple[str, ...]) -> None:
        self._tokens = tokens
        self._stops = tuple(stop for stop in stops if stop)
        self.hit = False

    def __iter__(self) -> Iterator[str]:
        if not self._stops:
            yield from self._tokens
            return
        pending = ""
        for token in self._tokens:
            pending += token
            found = [at for at in (pending.find(stop) for stop in self._stops) if at != -1]
            if found:
                if min(found):
                    yield pending[: min(found)]
                self.hit = True
                return
            keep = self._held(pending)
            if len(pending) > keep:
                yield pending[: len(pending) - keep]
                pending = pending[len(pending) - keep :]
        if pending:
            yield pending

    def _held(self, text: str) -> int:
        """The length of the longest end of ``text`` that a stop sequence starts with."""
        longest = min(len(text), max(len(stop) for stop in self._stops) - 1)
        for size in range(longest, 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                return size
        return 0


def model_object(model: str) -> dict[str, Any]:
    """A model as ``GET /v1/models`` lists it."""
    return {"id": model, "object": "model", "created": _MODELS_CREATED, "owned_by": "assisters"}
