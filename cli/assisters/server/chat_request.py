"""A chat completion request as the server reads it: validated the way OpenAI does,
with OpenAI's error messages (:class:`~assisters.server.api_errors.ApiError`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from assisters.server.api_errors import ApiError
from assisters.server.models import MODELS

MAX_CHOICES = 8
MAX_TOKENS_LIMIT = 1_000_000


@dataclass(frozen=True)
class ChatRequest:
    """The parts of a chat completion request the fake models use."""

    model: str
    messages: list[dict[str, Any]]
    n: int = 1
    limit: int | None = None  # max_completion_tokens, else max_tokens
    seed: int = 0
    stream: bool = False
    include_usage: bool = False
    prefix: str | None = None  # the final assistant message to continue, if any
    stop: tuple[str, ...] = ()  # stop sequences: the answer ends before the first one


def parse_chat_request(body: bytes, default_model: str | None = None) -> ChatRequest:
    """Validate a request body the way OpenAI does, raising ApiError (400/404) if bad."""
    return chat_request_from(json_object(body), default_model)


def chat_request_from(data: dict[str, Any], default_model: str | None = None) -> ChatRequest:
    """Validate a decoded request body (an HTTP body, or the ``body`` of a batch line)."""
    data = dict(data)  # the default model is put in a copy, never in the caller's object
    if default_model and isinstance(data.get("model"), str) and data["model"] not in MODELS:
        data["model"] = default_model
    model = _model_of(data)
    messages = _messages_of(data)
    limit = _int_field(data, "max_completion_tokens", None, 1, MAX_TOKENS_LIMIT)
    if limit is None:
        limit = _int_field(data, "max_tokens", None, 1, MAX_TOKENS_LIMIT)
    return ChatRequest(
        model=model,
        messages=messages,
        n=_int_field(data, "n", 1, 1, MAX_CHOICES) or 1,
        limit=limit,
        seed=_int_field(data, "seed", 0, None, None) or 0,
        stream=_bool_field(data, "stream"),
        include_usage=_include_usage(data),
        prefix=_prefix_of(data, messages),
        stop=_stop_of(data),
    )


MAX_STOP_SEQUENCES = 4  # OpenAI's limit


def _stop_of(data: dict[str, Any]) -> tuple[str, ...]:
    """``stop``: a string or an array of up to four strings, as OpenAI takes it."""
    stop = data.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        message = "Invalid type for 'stop': expected a string or an array of strings."
        raise ApiError(400, message, param="stop")
    if len(stop) > MAX_STOP_SEQUENCES:
        message = (f"Invalid 'stop': array too long. Expected an array with maximum length "
                   f"{MAX_STOP_SEQUENCES}, but got an array with length {len(stop)} instead.")
        raise ApiError(400, message, param="stop")
    return tuple(item for item in stop if item)


def _prefix_of(data: dict[str, Any], messages: list[dict[str, Any]]) -> str | None:
    """The text of a final assistant message the answer must continue, else None.

    vLLM continues it with ``continue_final_message: true`` (and refuses that together
    with ``add_generation_prompt: true``); llama.cpp continues it without being asked.
    So a final assistant message is continued unless ``continue_final_message`` is
    explicitly false, in which case it is answered like any conversation.
    """
    continue_final = _optional_bool(data, "continue_final_message")
    if continue_final and _optional_bool(data, "add_generation_prompt"):
        message = "Cannot set both `continue_final_message` and `add_generation_prompt` to True."
        raise ApiError(400, message, param="continue_final_message")
    if continue_final is False or messages[-1].get("role") != "assistant":
        return None
    return message_text(messages[-1])


def json_object(body: bytes) -> dict[str, Any]:
    """A JSON request body that must be an object, or the 400 OpenAI sends."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        message = f"We could not parse the JSON body of your request: {exc}"
        raise ApiError(400, message) from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return data


def _model_of(data: dict[str, Any]) -> str:
    model = data.get("model")
    if model is None:
        raise ApiError(400, "You must provide a model parameter.", param="model")
    if not isinstance(model, str):
        raise ApiError(400, "Invalid type for 'model': expected a string.", param="model")
    if model not in MODELS:
        message = f"The model `{model}` does not exist or you do not have access to it."
        raise ApiError(404, message, param="model", code="model_not_found")
    return model


def _messages_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    messages = data.get("messages")
    if messages is None:
        message = "Missing required parameter: 'messages'."
        raise ApiError(400, message, param="messages", code="missing_required_parameter")
    if not isinstance(messages, list):
        raise ApiError(400, "Invalid type for 'messages': expected an array.", param="messages")
    if not messages:
        message = "Invalid 'messages': empty array. Expected an array with minimum length 1."
        raise ApiError(400, message, param="messages", code="empty_array")
    for i, item in enumerate(messages):
        if not isinstance(item, dict):
            message = f"Invalid type for 'messages[{i}]': expected an object."
            raise ApiError(400, message, param=f"messages[{i}]")
    return messages


def _int_field(
    data: dict[str, Any], name: str, default: int | None, low: int | None, high: int | None
) -> int | None:
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(400, f"Invalid type for '{name}': expected an integer.", param=name)
    if (low is not None and value < low) or (high is not None and value > high):
        message = f"Invalid '{name}': {value} is outside the allowed range {low}..{high}."
        raise ApiError(400, message, param=name)
    return value


def _bool_field(data: dict[str, Any], name: str) -> bool:
    return bool(_optional_bool(data, name))


def _optional_bool(data: dict[str, Any], name: str) -> bool | None:
    value = data.get(name)
    if value is not None and not isinstance(value, bool):
        raise ApiError(400, f"Invalid type for '{name}': expected a boolean.", param=name)
    return value


def _include_usage(data: dict[str, Any]) -> bool:
    options = data.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        message = "Invalid type for 'stream_options': expected an object."
        raise ApiError(400, message, param="stream_options")
    return _bool_field(options, "include_usage")


def message_text(message: dict[str, Any]) -> str:
    """A message's text: a string content, or its ``text`` parts joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """A rough count (words), good enough for usage numbers that only need to be plausible."""
    return sum(len(message_text(m).split()) for m in messages)
