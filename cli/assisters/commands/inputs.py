"""From a command's parameters to what the core takes: settings, the prompt, the body.

Shared by the commands that send a chat request. Everything beyond click is
imported inside the functions, when a command runs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from assisters.config import Settings
    from assisters.request import ChatOptions
    from assisters.terminal import Streams


def settings_from(params: dict[str, Any], *, need_key: bool = True) -> Settings:
    """The settings, from the command's flags, the environment and the config file;
    ``need_key=False`` for a command that sends nothing (``batch prepare``)."""
    from assisters.config import Overrides, load_settings

    flags = Overrides(
        base_url=params.get("base_url"),
        model=params.get("model"),
        api_key=params.get("api_key"),
        timeout=params.get("timeout"),
        connect_timeout=params.get("connect_timeout"),
        first_byte_timeout=params.get("first_byte_timeout"),
        response_head_timeout=params.get("response_head_timeout"),
        idle_timeout=params.get("idle_timeout"),
        total_timeout=params.get("total_timeout"),
        stream_usage=params.get("stream_usage"),
        profile=params.get("profile"),
        max_retries=params.get("max_retries"),
        max_retry_wait=params.get("max_retry_wait"),
        max_total_wait=params.get("max_total_wait"),
        resume=params.get("resume"),
        max_resumes=params.get("max_resumes"),
        store=params.get("store"),
        context=params.get("context"),
    )
    return load_settings(flags, os.environ, need_key=need_key)


def read_prompt(prompt_args: tuple[str, ...], streams: Streams) -> str:
    from assisters.request import compose_prompt

    stdin_text = None
    if not streams.stdin_is_tty:
        stdin_text = streams.stdin.read().decode("utf-8", "replace")
    prompt = compose_prompt(prompt_args, stdin_text)
    if not prompt.strip():
        raise click.UsageError("no prompt: give it as arguments or on stdin")
    return prompt


def chat_body(params: dict[str, Any], settings: Settings, prompt: str, *, stream: bool,
              usage_shown: bool) -> bytes:
    from assisters.request import build_chat_body, encode_body

    stream_usage = settings.stream_usage if settings.stream_usage is not None else usage_shown
    options = chat_options_from(params, settings, stream=stream, stream_usage=stream and stream_usage)
    return encode_body(build_chat_body(prompt, options))


def chat_options_from(params: dict[str, Any], settings: Settings, *, stream: bool,
                      stream_usage: bool, option_hint: str = "'-o' / '--option'") -> ChatOptions:
    """The body fields the request options give (-m, -s, -t, ..., -o KEY VALUE): the
    one translation, for ``chat``, ``debug`` and the defaults of ``batch`` lines."""
    from assisters.request import ChatOptions, parse_option_value

    return ChatOptions(
        model=settings.model,
        system=params.get("system"),
        temperature=params.get("temperature"),
        max_tokens=params.get("max_tokens"),
        top_p=params.get("top_p"),
        stop=tuple(params.get("stop") or ()),
        seed=params.get("seed"),
        extra=extra_fields(params.get("extra") or (), parse_option_value, option_hint),
        stream=stream,
        stream_usage=stream_usage,
    )


def extra_fields(pairs: Any, parse: Any, hint: str = "'-o' / '--option'") -> dict[str, Any]:
    """``-o KEY VALUE`` pairs as body fields; a VALUE that cannot be sent is a usage error."""
    fields = {}
    for key, value in pairs:
        try:
            fields[key] = parse(value)
        except ValueError as exc:
            raise click.BadParameter(f"{key} {value[:40]!r}: {exc}", param_hint=hint) from None
    return fields


def prepare_chat(params: dict[str, Any], *, stream: bool = True, usage_shown: bool = True,
                 ) -> tuple[Settings, bytes, Streams]:
    """What chat and debug share: prompt, settings, request body, the http warning."""
    from assisters.terminal import system_streams

    streams = system_streams(os.environ)
    prompt = read_prompt(params["prompt"], streams)
    settings = settings_from(params)
    body = chat_body(params, settings, prompt, stream=stream, usage_shown=usage_shown)
    warn_insecure(settings, streams)
    return settings, body, streams


def warn_insecure(settings: Settings, streams: Streams) -> None:
    from assisters.config import insecure_key_warning

    warning = insecure_key_warning(settings)
    if warning:
        streams.warn(warning)
