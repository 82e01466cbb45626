"""A conversation too long for the model's context window: telling it, and ``--context``.

Servers refuse such a request before answering, each in its own words: OpenAI
and vLLM (400, ``context_length_exceeded``, "This model's maximum context length
is 8192 tokens. However, your messages resulted in 9000 tokens"), llama.cpp
("the request exceeds the available context size"), Mistral, Anthropic-style
gateways ("prompt is too long"). :func:`is_overflow` recognises them by status
and wording. When a conversation's history made the request too long, the user
gets one line with the server's words, the size when it is known (the server's
count in its message, or ``usage.prompt_tokens`` of the last answer) and the ways
out; a first question that is too long alone keeps the server's words as they are.

``--context drop-oldest`` instead sends the request again without the oldest
exchanges (the system prompt and the newest question always stay) until the
server accepts it. The first cut is estimated from the server's own numbers
when it gave them (the share of characters to keep), then one exchange more
per refusal; a session remembers how many it dropped, so the next turn starts
there instead of being refused again.
"""

from __future__ import annotations

import re

from assisters.errors import AssistersError, HTTPStatusError, StreamError

_OVERFLOW = re.compile(
    r"context[ _-]?(length|window|size)|maximum context|prompt is too long|too many tokens"
    r"|reduce the length of the messages|exceeds? the (available )?context",
    re.IGNORECASE,
)
_PROMPT_TOKENS = re.compile(
    r"(?:resulted in|requested|prompt (?:contains|has|is too long:)|input (?:of|has)) (\d+) tokens"
    r"|(\d+) (?:prompt )?tokens? (?:in the messages|>)",
    re.IGNORECASE,
)
_LIMIT = re.compile(r"(?:maximum context length is|context (?:length|window|size) (?:is|of)) (\d+)",
                    re.IGNORECASE)
POLICIES = ("error", "drop-oldest")


def is_overflow(exc: AssistersError) -> bool:
    """The server refused the request as too long for the context window."""
    status = getattr(exc, "http_status", None)
    if isinstance(exc, HTTPStatusError | StreamError) and status in (None, 400, 413, 422):
        return bool(_OVERFLOW.search(exc.message))
    return False


def prompt_tokens(exc: AssistersError) -> int | None:
    """The request's size in tokens, when the server's message gives it."""
    match = _PROMPT_TOKENS.search(exc.message)
    if match is None:
        return None
    return int(match.group(1) or match.group(2))


def context_limit(exc: AssistersError) -> int | None:
    match = _LIMIT.search(exc.message)
    return int(match.group(1)) if match else None


def overflow_line(exc: AssistersError, last_prompt_tokens: int | None, *, interactive: bool) -> str:
    """One line: too long, the server's own words (with the size, when it gave it, else
    the last answered request's), and what to do."""
    known = "" if prompt_tokens(exc) is not None or last_prompt_tokens is None else (
        f"; the last answered request was {last_prompt_tokens} prompt tokens")
    ways = "/undo, /reset" if interactive else "a new conversation (no -c)"
    return (f"the conversation is too long for the model's context window ({exc.message}{known}); "
            f"try {ways}, or --context drop-oldest")


def first_cut(exc: AssistersError, sizes: list[int]) -> int:
    """How many of the oldest exchanges to drop first, from the server's numbers.

    ``sizes`` are the exchanges' lengths in characters, oldest first; the last
    entry is what is always kept (system prompt and the new question). Without
    both numbers from the server, one exchange.
    """
    tokens, limit = prompt_tokens(exc), context_limit(exc)
    droppable = len(sizes) - 1
    if not tokens or not limit or tokens <= limit or droppable <= 0:
        return 1
    keep_chars = sum(sizes) * limit / tokens * 0.9  # a margin: tokens per character varies
    total, drop = sum(sizes), 0
    while drop < droppable and total > keep_chars:
        total -= sizes[drop]
        drop += 1
    return max(drop, 1)
