"""Building the request: the prompt from arguments and stdin, and the JSON body.

Imported by the command definitions, so it imports orjson only when a body is
built: ``--help``, ``--version`` and shell completion never load it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ChatOptions:
    """Body fields from the command line; ``None`` means "let the server decide"."""

    model: str
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    stream: bool = True
    stream_usage: bool = False


def compose_prompt(args: tuple[str, ...] | list[str], stdin_text: str | None) -> str:
    """The arguments joined by spaces; stdin text, when there is any, comes
    first, then a blank line, then the argument text."""
    arg_text = " ".join(args)
    if stdin_text and arg_text:
        return f"{stdin_text.rstrip(chr(10))}\n\n{arg_text}"
    return stdin_text or arg_text


JSON_INTEGERS = (-(2**63), 2**64 - 1)  # what the body's encoder (orjson) can write


class _NotJSON(Exception):
    pass


def parse_option_value(value: str) -> Any:
    """``-o KEY VALUE``: VALUE as JSON when it is valid JSON, else the string.

    JSON that could not be sent as written raises :class:`ValueError`: an integer
    beyond 64 bits or a number beyond a double (orjson would turn the first into a
    float and refuse the second). ``NaN`` and ``Infinity`` are not JSON: they are
    sent as strings. A ``\ud800`` escape without its pair becomes U+FFFD.
    """
    import json  # the standard library's, for its hooks on each number

    try:
        parsed = json.loads(value, parse_int=_integer, parse_float=_real, parse_constant=_not_json)
    except (json.JSONDecodeError, _NotJSON):
        return value
    return _valid_text(parsed)


def _integer(text: str) -> int:
    try:
        number = int(text)
    except ValueError:  # more digits than Python converts
        number = JSON_INTEGERS[1] + 1
    if not JSON_INTEGERS[0] <= number <= JSON_INTEGERS[1]:
        raise ValueError(f"the integer {text[:30]}{'...' if len(text) > 30 else ''} does not fit in 64 bits")
    return number


def _real(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"the number {text[:30]} is too large for a double")
    return number


def _not_json(text: str) -> Any:
    raise _NotJSON


def _valid_text(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape: one U+FFFD each
            return "".join("\ufffd" if 0xD800 <= ord(char) <= 0xDFFF else char for char in value)
        return value
    if isinstance(value, list):
        return [_valid_text(item) for item in value]
    if isinstance(value, dict):
        return {_valid_text(k): _valid_text(v) for k, v in value.items()}
    return value


def build_chat_body(prompt: str, options: ChatOptions) -> dict[str, Any]:
    messages = []
    if options.system:
        messages.append({"role": "system", "content": options.system})
    messages.append({"role": "user", "content": prompt})
    body: dict[str, Any] = {"model": options.model, "messages": messages}
    optional = {
        "temperature": options.temperature,
        "max_tokens": options.max_tokens,
        "top_p": options.top_p,
        "seed": options.seed,
        "stop": list(options.stop) if options.stop else None,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if options.stream:
        body["stream"] = True
        if options.stream_usage:
            body["stream_options"] = {"include_usage": True}
    body.update(options.extra)
    return body


def encode_body(body: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(body)
