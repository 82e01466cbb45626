"""Which endpoint answers a request: the route table, and the small endpoints.

An endpoint is a function of the handler (a
:class:`~assisters.server.event_stream.Responder`) and the request body. A new
endpoint is a module of its own, added here; routes the server does not implement
answer 404. The Files and Batches API (:data:`BATCH_API`, where ``{id}`` is one
path segment) answers only when ``batch_api`` is on, and meets the injected
``--api-fail-status`` failures first.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from assisters.server import batches, files
from assisters.server.api_errors import MAX_BODY_BYTES, ApiError, too_large
from assisters.server.chat import chat_completions
from assisters.server.event_stream import Responder
from assisters.server.faults import injected_api_failure
from assisters.server.models import MODELS, model_object
from assisters.server.options import ServeOptions

Endpoint = Callable[[Responder, bytes], None]
UPLOAD_SLACK = 64 * 1024  # room for the multipart framing and the other fields around a file

BATCH_API: dict[tuple[str, ...], dict[str, Callable[..., None]]] = {
    ("files",): {"GET": files.list_files, "POST": files.upload_file},
    ("files", "{id}"): {"GET": files.retrieve_file, "DELETE": files.delete_file},
    ("files", "{id}", "content"): {"GET": files.file_content},
    ("batches",): {"GET": batches.list_batches, "POST": batches.create_batch},
    ("batches", "{id}"): {"GET": batches.retrieve_batch},
    ("batches", "{id}", "cancel"): {"POST": batches.cancel_batch},
}


def list_models(handler: Responder, _body: bytes) -> None:
    handler.send_json(200, {"object": "list", "data": [model_object(m) for m in MODELS]})


def get_model(handler: Responder, _body: bytes, model: str) -> None:
    if model not in MODELS:
        message = f"The model `{model}` does not exist or you do not have access to it."
        raise ApiError(404, message, param="model", code="model_not_found")
    handler.send_json(200, model_object(model))


def route(method: str, raw_path: str, options: ServeOptions | None = None) -> Endpoint:
    """The endpoint for ``method raw_path``; raises ApiError 404 or 405."""
    path = api_path(raw_path)
    if path == "/chat/completions":
        return _allow(method, ("POST",), chat_completions)
    if path == "/models":
        return _allow(method, ("GET",), list_models)
    if path.startswith("/models/"):
        model = path.removeprefix("/models/")
        return _allow(method, ("GET",), lambda handler, body: get_model(handler, body, model))
    if options is None or options.batch_api:
        found = _batch_api_route(method, path)
        if found is not None:
            return found
    message = f"Invalid URL ({method} {urlsplit(raw_path).path})"
    raise ApiError(404, message)


def _batch_api_route(method: str, path: str) -> Endpoint | None:
    segments = tuple(path.strip("/").split("/"))
    for pattern, methods in BATCH_API.items():
        if len(pattern) != len(segments):
            continue
        ids = [seg for pat, seg in zip(pattern, segments, strict=True) if pat == "{id}" and seg]
        if all(pat in ("{id}", seg) for pat, seg in zip(pattern, segments, strict=True)) \
                and len(ids) == pattern.count("{id}"):
            endpoint = _allow(method, tuple(methods), methods.get(method, _no_endpoint))
            return lambda handler, body: _batch_api_call(handler, body, endpoint, ids)
    return None


def _batch_api_call(handler: Responder, body: bytes, endpoint: Callable[..., None], ids: list[str]) -> None:
    failure = injected_api_failure(handler.state.options, handler.state.note_api_request())
    if failure is not None:
        raise failure
    endpoint(handler, body, *ids)


def _no_endpoint(*_args: object) -> None:  # _allow has refused the method already
    raise AssertionError("unreachable")


def body_limit(method: str, raw_path: str, options: ServeOptions) -> tuple[int, Callable[[], ApiError]]:
    """The largest body the handler reads for this request, and the error past it:
    an upload may be as large as ``max_upload_bytes`` (plus its form), and is then
    refused as OpenAI refuses a file too large."""
    if method == "POST" and api_path(raw_path) == "/files" and options.batch_api:
        limit = options.max_upload_bytes
        return limit + UPLOAD_SLACK, lambda: files.too_large(limit)
    return MAX_BODY_BYTES, too_large


def _allow(method: str, allowed: tuple[str, ...], endpoint: Endpoint) -> Endpoint:
    if method not in allowed:
        names = ", ".join(allowed)
        message = f"Method {method} is not allowed here; use {' or '.join(allowed)}."
        raise ApiError(405, message, headers={"Allow": names})
    return endpoint


def api_path(raw: str) -> str:
    """The route part of a request path: no query, no trailing slash, no /v1 prefix."""
    path = urlsplit(raw).path.rstrip("/")
    if path == "/v1" or path.startswith("/v1/"):
        path = path[3:]
    return path or "/"
