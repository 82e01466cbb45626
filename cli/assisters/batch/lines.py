"""The OpenAI Batch output line, one per request, and how to tell a failed one.

* answered: ``{"id": "batch_req_...", "custom_id": ..., "response": {"status_code":
  200, "request_id": ..., "body": <chat.completion>}, "error": null}``;
* refused by the server: the same with its HTTP status and its error body;
* failed without an answer (cannot connect, a timeout, a cut stream, an error
  inside a 200 stream, a reply that is not a chat completion): ``"response": null,
  "error": {"code": CLASS, "message": ...}``, CLASS naming the exit-status class
  (``temporary``, ``server``, ``protocol``, ...; see :class:`~assisters.errors.ExitStatus`).

``request_id`` is the server's ``x-request-id`` header, null when it sent none.
"""

from __future__ import annotations

import os
import random
from typing import Any

import orjson

from assisters.answer import one_line
from assisters.errors import AssistersError, ExitStatus, HTTPStatusError

_ids = random.Random(os.urandom(16))  # unique, not secret: no system call per line


def line_id() -> str:
    return f"batch_req_{_ids.getrandbits(96):024x}"


def answered(custom_id: str, completion: dict[str, Any], request_id: str | None) -> dict[str, Any]:
    response = {"status_code": 200, "request_id": request_id, "body": completion}
    return {"id": line_id(), "custom_id": custom_id, "response": response, "error": None}


def failed(custom_id: str, error: AssistersError, request_id: str | None) -> dict[str, Any]:
    """The line of a request that failed for good."""
    if isinstance(error, HTTPStatusError):
        response = {"status_code": error.http_status, "request_id": request_id,
                    "body": error_body(error.body, error.message)}
        return {"id": line_id(), "custom_id": custom_id, "response": response, "error": None}
    problem = {"code": error_class(error), "message": error.message}
    return {"id": line_id(), "custom_id": custom_id, "response": None, "error": problem}


def error_body(body: bytes, message: str) -> Any:
    """The server's error body as JSON; an OpenAI-style error object when it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        text = one_line(body.decode("utf-8", "replace"), 400) or message
        return {"error": {"message": text, "type": None, "param": None, "code": None}}


def error_class(error: AssistersError) -> str:
    """The exit-status class of a failure, as OUTPUT and the summary name it."""
    try:
        return ExitStatus(error.status).name.lower()
    except ValueError:
        return "internal"


def failure_kind(error: AssistersError) -> str:
    """How the summary counts a failure: ``http_503`` for an HTTP status, else its class."""
    if isinstance(error, HTTPStatusError):
        return f"http_{error.http_status}"
    return error_class(error)


def parse_line(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """A JSON Lines line of a batch file (request or output) as its object and its
    ``custom_id``: ``(None, None)`` when it is not a JSON object, the id None when it
    is missing or not a string."""
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(line, dict):
        return None, None
    custom_id = line.get("custom_id")
    return line, custom_id if isinstance(custom_id, str) else None


def is_failure(line: dict[str, Any]) -> bool:
    """Whether an OUTPUT line records a failure (what ``--retry-failed`` sends again)."""
    if line.get("error") is not None:
        return True
    response = line.get("response")
    return not isinstance(response, dict) or response.get("status_code") != 200
