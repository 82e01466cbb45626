"""Building the request: the prompt from arguments and stdin, and the JSON body.

Imported by the command definitions, so it imports orjson only when a body is
built: ``--help``, ``--version`` and shell completion never load it.
"""

from __future__ import annotations

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


def parse_option_value(value: str) -> Any:
    """``-o KEY VALUE``: VALUE as JSON when it is valid JSON, else the string."""
    import orjson

    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
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
