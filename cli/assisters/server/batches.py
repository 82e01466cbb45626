"""The Batches API: ``/v1/batches`` (create, list), ``/v1/batches/{id}`` (retrieve),
``/v1/batches/{id}/cancel``.

A created batch is ``validating``; :mod:`~assisters.server.batch_runner` takes it
through the other states in the background. Objects have exactly the fields of the
official SDK's ``Batch``. The endpoint is ``/v1/chat/completions`` (or Azure's
``/chat/completions``); each input line's ``url`` must name the same one.

Cancelling is allowed while the batch is validating, in progress or finalizing; a
cancel of a batch already cancelling or cancelled answers the batch again (so a
retried cancel is harmless); one of a completed, failed or expired batch is
refused with 400 (not 409, which clients retry).
"""

from __future__ import annotations

import math
import time
from typing import Any

from assisters.server.api_errors import ApiError
from assisters.server.batch_runner import start_runner
from assisters.server.chat_request import json_object
from assisters.server.event_stream import Responder
from assisters.server.files import int_param, page, query_params
from assisters.server.state import TERMINAL, BatchRecord, new_id

ENDPOINTS = ("/v1/chat/completions", "/chat/completions")
COMPLETION_WINDOWS = ("24h",)
MAX_ACTIVE_BATCHES = 64  # batches not yet ended; one runner thread each
_METADATA_PAIRS, _KEY_CHARS, _VALUE_CHARS = 16, 64, 512
_OUTPUT_EXPIRY = (3600, 30 * 86400)
_TIMES = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
          "cancelling_at", "cancelled_at")


def batch_object(record: BatchRecord) -> dict[str, Any]:
    with record.lock:
        errors = {"object": "list", "data": list(record.errors)} if record.errors else None
        tokens = dict(record.tokens)
        return {
            "id": record.id,
            "object": "batch",
            "endpoint": record.endpoint,
            "errors": errors,
            "input_file_id": record.input_file_id,
            "completion_window": record.completion_window,
            "status": record.status,
            "output_file_id": record.output_file_id,
            "error_file_id": record.error_file_id,
            "created_at": record.created_at,
            "expires_at": record.expires_at,
            **{name: record.times.get(name) for name in _TIMES},
            "request_counts": dict(record.counts),
            "metadata": dict(record.metadata) if record.metadata is not None else None,
            "model": record.model,
            "usage": {
                "input_tokens": tokens["input"],
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": tokens["output"],
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": tokens["input"] + tokens["output"],
            },
        }


def create_batch(handler: Responder, body: bytes) -> None:
    state = handler.state
    data = json_object(body)
    input_file_id = _required_text(data, "input_file_id")
    endpoint = _required_text(data, "endpoint")
    window = _required_text(data, "completion_window")
    if endpoint not in ENDPOINTS:
        message = f"Invalid value for 'endpoint': '{endpoint}'. This server runs {' and '.join(ENDPOINTS)}."
        raise ApiError(400, message, param="endpoint", code="invalid_value")
    if window not in COMPLETION_WINDOWS:
        message = f"Invalid value for 'completion_window': '{window}'. Supported values are: 24h."
        raise ApiError(400, message, param="completion_window", code="invalid_value")
    metadata = _metadata(data.get("metadata"))
    output_expiry = _output_expiry(data.get("output_expires_after"))
    stored = state.files.get(input_file_id)
    if stored is None:
        raise ApiError(404, f"No such File object: {input_file_id}", param="input_file_id")
    if stored.purpose != "batch":
        message = (f"The input file {input_file_id} must be uploaded with purpose 'batch', "
                   f"not '{stored.purpose}'.")
        raise ApiError(400, message, param="input_file_id")
    batches = state.batches
    if sum(b.status not in TERMINAL for b in batches.newest_first()) >= MAX_ACTIVE_BATCHES:
        message = f"This server runs at most {MAX_ACTIVE_BATCHES} batches at a time; wait for one to end."
        raise ApiError(429, message, type_="requests", code="rate_limit_exceeded",
                       headers={"Retry-After": "1"})
    window_seconds = state.options.batch_window
    now = int(time.time())
    record = BatchRecord(new_id("batch"), input_file_id, endpoint, window, created_at=now,
                         expires_at=now + math.ceil(window_seconds),
                         deadline=time.monotonic() + window_seconds,
                         metadata=metadata, output_expires_after=output_expiry)
    if not batches.add(record):
        raise ApiError(400, "This server holds no more batches; restart it.")
    start_runner(state, record)
    handler.send_json(200, batch_object(record))


def list_batches(handler: Responder, _body: bytes) -> None:
    query = query_params(handler.path)
    limit = int_param(query, "limit", 20, 1, 100)
    records = handler.state.batches.newest_first()
    after = query.get("after")
    if after is not None:
        ids = [r.id for r in records]
        if after not in ids:
            raise _not_found(after, param="after")
        records = records[ids.index(after) + 1 :]
    data = [batch_object(r) for r in records[:limit]]
    handler.send_json(200, page(data, more=len(records) > limit))


def retrieve_batch(handler: Responder, _body: bytes, batch_id: str) -> None:
    handler.send_json(200, batch_object(_record(handler, batch_id)))


def cancel_batch(handler: Responder, _body: bytes, batch_id: str) -> None:
    record = _record(handler, batch_id)
    before = record.cancel()
    if before in ("completed", "failed", "expired"):
        raise ApiError(400, f"Cannot cancel a batch with status '{before}'.")
    handler.send_json(200, batch_object(record))


def _record(handler: Responder, batch_id: str) -> BatchRecord:
    record = handler.state.batches.get(batch_id)
    if record is None:
        raise _not_found(batch_id)
    return record


def _not_found(batch_id: str, param: str | None = None) -> ApiError:
    return ApiError(404, f"No batch found with id '{batch_id}'.", param=param)


def _required_text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        raise ApiError(400, f"Missing required parameter: '{name}'.", param=name,
                       code="missing_required_parameter")
    if not isinstance(value, str):
        raise ApiError(400, f"Invalid type for '{name}': expected a string.", param=name)
    return value


def _metadata(value: Any) -> dict[str, str] | None:
    """Up to 16 string pairs, keys up to 64 characters, values up to 512, as OpenAI allows."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ApiError(400, "Invalid type for 'metadata': expected an object.", param="metadata")
    if len(value) > _METADATA_PAIRS:
        message = f"Invalid 'metadata': at most {_METADATA_PAIRS} pairs are allowed."
        raise ApiError(400, message, param="metadata")
    for key, item in value.items():
        if len(key) > _KEY_CHARS or not isinstance(item, str) or len(item) > _VALUE_CHARS:
            message = (f"Invalid 'metadata': keys are strings of up to {_KEY_CHARS} characters, "
                       f"values strings of up to {_VALUE_CHARS}.")
            raise ApiError(400, message, param=f"metadata.{key}"[:80])
    return dict(value)


def _output_expiry(value: Any) -> int | None:
    if value is None:
        return None
    seconds = value.get("seconds") if isinstance(value, dict) else None
    low, high = _OUTPUT_EXPIRY
    if (not isinstance(value, dict) or value.get("anchor") != "created_at"
            or not isinstance(seconds, int) or not low <= seconds <= high):
        message = f"Invalid 'output_expires_after': anchor 'created_at' and seconds between {low} and {high}."
        raise ApiError(400, message, param="output_expires_after")
    return seconds
