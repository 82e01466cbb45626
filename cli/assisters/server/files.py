"""The Files API: ``/v1/files`` (upload, list), ``/v1/files/{id}`` (retrieve, delete),
``/v1/files/{id}/content`` (download).

Objects have the fields of the official SDK's ``FileObject``; errors are worded as
OpenAI words them. An upload is capped at ``max_upload_bytes`` (OpenAI's batch limit
is 200 MB; this server holds an upload in memory while reading it, so its default is
16 MiB): a larger one is answered ``400 File is too large.`` as OpenAI does. A file
uploaded for ``purpose=batch`` must be named ``*.jsonl`` (OpenAI refuses others), and
expires after 30 days unless ``expires_after`` says otherwise.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from assisters.server.api_errors import ApiError
from assisters.server.event_stream import Responder
from assisters.server.multipart import parse_form
from assisters.server.state import StoredFile

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
BATCH_FILE_DAYS = 30
_EXPIRY_RANGE = (3600, 30 * 86400)  # what OpenAI allows for expires_after[seconds]
_CHUNK = 256 * 1024


def file_object(stored: StoredFile) -> dict[str, Any]:
    return {
        "id": stored.id,
        "object": "file",
        "bytes": stored.bytes,
        "created_at": stored.created_at,
        "expires_at": stored.expires_at,
        "filename": stored.filename,
        "purpose": stored.purpose,
        "status": "processed",
        "status_details": None,
    }


def too_large(limit: int) -> ApiError:
    """OpenAI's answer to an upload over the limit (its message, then ours: the limit)."""
    return ApiError(400, f"File is too large. This server accepts files up to {limit} bytes.", param="file")


def upload_file(handler: Responder, body: bytes) -> None:
    options = handler.state.options
    form = parse_form(handler.headers.get("Content-Type", ""), body)
    upload, purpose = form.get("file"), form.get("purpose")
    if upload is None:
        raise _missing("file")
    if purpose is None:
        raise _missing("purpose")
    purpose_name = purpose.text()
    if purpose_name not in PURPOSES:
        message = (f"Invalid value for 'purpose': '{purpose_name}'. "
                   f"Supported values are: {', '.join(PURPOSES)}.")
        raise ApiError(400, message, param="purpose", code="invalid_value")
    filename = upload.filename or "upload"
    if purpose_name == "batch" and not filename.endswith(".jsonl"):
        raise ApiError(400, "Invalid file format for Batch API. Must be .jsonl", param="file")
    if len(upload.data) > options.max_upload_bytes:
        raise too_large(options.max_upload_bytes)
    files = handler.state.files
    if not files.room_for(len(upload.data)):
        message = "The server's file storage is full; delete files (DELETE /v1/files/{id}) first."
        raise ApiError(400, message, param="file")
    expires_at = _expiry(form, purpose_name)
    stored = files.add(bytes(upload.data), filename, purpose_name, expires_at)
    handler.send_json(200, file_object(stored))


def _expiry(form: dict[str, Any], purpose: str) -> int | None:
    anchor, seconds = form.get("expires_after[anchor]"), form.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return int(time.time()) + BATCH_FILE_DAYS * 86400 if purpose == "batch" else None
    if anchor is None or anchor.text() != "created_at" or seconds is None:
        message = "Invalid 'expires_after': it needs anchor 'created_at' and seconds."
        raise ApiError(400, message, param="expires_after")
    try:
        value = int(seconds.text())
    except ValueError:
        value = -1
    low, high = _EXPIRY_RANGE
    if not low <= value <= high:
        message = f"Invalid 'expires_after[seconds]': it must be between {low} and {high}."
        raise ApiError(400, message, param="expires_after[seconds]")
    return int(time.time()) + value


def list_files(handler: Responder, _body: bytes) -> None:
    query = query_params(handler.path)
    files = handler.state.files.listing()
    if "purpose" in query:
        files = [f for f in files if f.purpose == query["purpose"]]
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ApiError(400, "Invalid value for 'order': expected 'asc' or 'desc'.", param="order")
    if order == "desc":
        files.reverse()
    limit = int_param(query, "limit", 10_000, 1, 10_000)
    if "after" in query:
        ids = [f.id for f in files]
        if query["after"] not in ids:
            raise not_found(query["after"], param="after")
        files = files[ids.index(query["after"]) + 1 :]
    handler.send_json(200, page([file_object(f) for f in files[:limit]], more=len(files) > limit))


def retrieve_file(handler: Responder, _body: bytes, file_id: str) -> None:
    handler.send_json(200, file_object(stored_file(handler, file_id)))


def delete_file(handler: Responder, _body: bytes, file_id: str) -> None:
    if not handler.state.files.delete(file_id):
        raise not_found(file_id)
    handler.send_json(200, {"id": file_id, "object": "file", "deleted": True})


def file_content(handler: Responder, _body: bytes, file_id: str) -> None:
    """The bytes, read from disk in pieces: a large output file never sits in memory."""
    stored = stored_file(handler, file_id)
    try:
        source = stored.path.open("rb")
    except OSError:  # deleted a moment ago
        raise not_found(file_id) from None
    with source:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(stored.bytes))
        handler.end_headers()
        while data := source.read(_CHUNK):
            handler.wfile.write(data)


def stored_file(handler: Responder, file_id: str) -> StoredFile:
    stored = handler.state.files.get(file_id)
    if stored is None:
        raise not_found(file_id)
    return stored


def not_found(file_id: str, param: str | None = "id") -> ApiError:
    return ApiError(404, f"No such File object: {file_id}", param=param)


def _missing(name: str) -> ApiError:
    return ApiError(400, f"Missing required parameter: '{name}'.", param=name,
                    code="missing_required_parameter")


def query_params(raw_path: str) -> dict[str, str]:
    """The query string's parameters (the first value of each)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(raw_path).query, keep_blank_values=True).items()}


def int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"Invalid value for '{name}': expected an integer.", param=name) from None
    if not low <= value <= high:
        message = f"Invalid '{name}': {value} is outside the allowed range {low}..{high}."
        raise ApiError(400, message, param=name)
    return value


def page(data: list[dict[str, Any]], *, more: bool) -> dict[str, Any]:
    """A cursor page, as the SDK's ``SyncCursorPage`` reads it."""
    first = data[0]["id"] if data else None
    last = data[-1]["id"] if data else None
    return {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": more}
